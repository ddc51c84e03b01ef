/*
 * cni-shim: the small native executable installed as podnet-bridge and podnet-ipam (the same
 * binary under both names), podnet's "thick plugin" (as Multus thick mode and Cilium do it).
 *
 * Why: the plugins are Node.js programs, and starting Node costs ~30 ms per CNI call, which
 * made ADD four times slower than the reference Go plugins. This shim starts in well under a
 * millisecond and hands the call to a warm `podnet cni-server` over a unix socket; the server
 * runs exactly the code the standalone executable runs (dispatch() in src/cni/skel.ts) and
 * sends back what it would have printed and its exit code.
 *
 * A node without a running server must keep working exactly as before, with nothing but the
 * installed files. So when nobody answers on the socket, the shim execs the standalone
 * single-executable build that sits next to it, `<dir of /proc/self/exe>/<name>.sea`, with the
 * same argv and environment. When the socket is not there, the shim has not read stdin yet and
 * the SEA gets the original stdin; when the server declines the call (it runs in another
 * network namespace, or does not speak this protocol version), stdin has been read already
 * and is handed over again through a memfd (or a pipe, on a kernel without memfd_create).
 *
 * Why the namespace check: a CNI plugin acts in the network namespace it is started in (the
 * "node" side of the veth, the bridge, nftables). The server acts in its own. A runtime that
 * runs the plugin elsewhere (a test namespace, `ctr` inside a private namespace) must not have
 * its bridge made in the server's namespace, so the server compares the shim's namespace with
 * its own and declines on a mismatch.
 *
 * The shim never falls back after it has sent a request and the server may have acted on it:
 * a connection lost or timed out mid-call becomes CNI error 11 ("try again later") on stdout,
 * and the runtime retries or cleans up with DEL, as after any failed ADD. Every socket read
 * and write is bounded by one deadline (120 s for the whole exchange), so it never hangs.
 *
 * Wire format, version 1 (the same text is in src/cni/server.ts: keep the two in step).
 * Integers are little-endian; "str" is a u32 length followed by that many bytes.
 *
 *   request:  "PNCQ"  u32 version (1)  u32 body length (at most 64 MiB), then the body:
 *             u64 st_dev, u64 st_ino   of stat("/proc/self/ns/net") in the shim
 *             str  plugin name          basename(argv[0]), 1..255 bytes
 *             u32  environment count    at most 65536, then that many:
 *             str  "KEY=VALUE"           each entry of environ (entries without '=' skipped)
 *             str  stdin                the configuration bytes, at most 16 MiB
 *             The body must end exactly there; anything else makes the server close.
 *   reply:    "PNCR"  u32 version (1)  u32 status  u32 exit code  str stdout  str stderr
 *             status 0: the call ran: print stdout and stderr, exit with the exit code
 *             status 1: wrong network namespace: fall back to the SEA
 *             status 2: request version not spoken by this server: fall back to the SEA
 *             (for statuses 1 and 2 the exit code is 0 and both strings are empty)
 *
 * Environment: PODNET_CNI_SOCKET overrides the socket path (default /run/podnet/cni.sock).
 * Build: cc -Wall -Wextra -O2 [-static] -o podnet-bridge native/cni-shim.c (scripts/build.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define DEFAULT_SOCKET "/run/podnet/cni.sock"
#define PROTOCOL_VERSION 1u
#define TIMEOUT_MS 120000
#define MAX_BODY (64u << 20)
#define MAX_NAME 255u
#define MAX_ENV_ENTRIES 65536u
#define MAX_STDIN (16u << 20)
#define MAX_STDOUT (64u << 20)
#define MAX_STDERR (1u << 20)
/* Used in error objects when the configuration's own cniVersion cannot be found. */
#define FALLBACK_CNI_VERSION "1.1.0"

enum { STATUS_RAN = 0, STATUS_WRONG_NETNS = 1, STATUS_BAD_VERSION = 2 };

/* A growable byte buffer. Allocation failure ends the process (see die_oom). */
struct buf {
  unsigned char *data;
  size_t len, cap;
};

static const char *plugin_name = "podnet";

static void die_oom(void) {
  static const char msg[] = "cni-shim: out of memory\n";
  ssize_t ignored = write(2, msg, sizeof msg - 1);
  (void)ignored;
  _exit(1);
}

static void buf_reserve(struct buf *b, size_t extra) {
  if (extra > SIZE_MAX - b->len) die_oom();
  size_t need = b->len + extra;
  if (need <= b->cap) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  unsigned char *p = realloc(b->data, cap);
  if (!p) die_oom();
  b->data = p;
  b->cap = cap;
}

static void buf_put(struct buf *b, const void *p, size_t n) {
  buf_reserve(b, n);
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void buf_u32(struct buf *b, uint32_t v) {
  unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
  buf_put(b, le, 4);
}

static void buf_u64(struct buf *b, uint64_t v) {
  buf_u32(b, (uint32_t)v);
  buf_u32(b, (uint32_t)(v >> 32));
}

static void buf_str(struct buf *b, const void *p, size_t n) {
  buf_u32(b, (uint32_t)n);
  buf_put(b, p, n);
}

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Writes all of p to fd, retrying short writes and EINTR. Returns 0, or -1 on error. */
static int write_all(int fd, const void *p, size_t n) {
  const unsigned char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/*
 * Finds the configuration's "cniVersion" in stdin without a JSON parser, for error objects the
 * shim writes itself; FALLBACK_CNI_VERSION when there is none that looks like "1.2.3".
 */
static void guess_cni_version(const struct buf *in, char *out, size_t outsz) {
  static const char key[] = "\"cniVersion\"";
  snprintf(out, outsz, "%s", FALLBACK_CNI_VERSION);
  if (!in || !in->data) return;
  const unsigned char *p = memmem(in->data, in->len, key, sizeof key - 1);
  if (!p) return;
  const unsigned char *end = in->data + in->len;
  p += sizeof key - 1;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
  if (p >= end || *p++ != ':') return;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
  if (p >= end || *p++ != '"') return;
  size_t n = 0;
  while (p + n < end && n < 15 && ((p[n] >= '0' && p[n] <= '9') || p[n] == '.')) n++;
  if (n == 0 || p + n >= end || p[n] != '"' || n >= outsz) return;
  memcpy(out, p, n);
  out[n] = '\0';
}

/*
 * Prints one CNI error object on stdout, as the plugins do, and exits 1. `stdin_bytes` (may be
 * NULL) supplies the cniVersion. The message is JSON-escaped here.
 */
static void fail_cni(const struct buf *stdin_bytes, int code, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char version[16];
  guess_cni_version(stdin_bytes, version, sizeof version);
  struct buf out = {0};
  char head[96];
  snprintf(head, sizeof head, "{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":\"", version, code);
  buf_put(&out, head, strlen(head));
  for (const unsigned char *c = (const unsigned char *)msg; *c; c++) {
    if (*c == '"' || *c == '\\') {
      buf_put(&out, "\\", 1);
      buf_put(&out, c, 1);
    } else if (*c < 0x20) {
      char esc[8];
      snprintf(esc, sizeof esc, "\\u%04x", *c);
      buf_put(&out, esc, 6);
    } else {
      buf_put(&out, c, 1);
    }
  }
  buf_put(&out, "\"}\n", 3);
  (void)write_all(1, out.data, out.len);
  exit(1);
}

/* Milliseconds on the monotonic clock. */
static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for `events` or the deadline passes. Returns 0, or -1 (errno set). */
static int wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    struct pollfd pfd = {.fd = fd, .events = events};
    int r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
    if (r > 0) return 0; /* Ready, or an error/hang-up that the next send/recv reports. */
    if (r < 0 && errno != EINTR) return -1;
  }
}

/* Sends all of p on the non-blocking socket before the deadline. Returns 0, or -1 (errno set). */
static int send_all(int fd, const unsigned char *p, size_t n, int64_t deadline) {
  while (n > 0) {
    /* MSG_NOSIGNAL: a server that went away is an error here, not a SIGPIPE. */
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
      if (wait_fd(fd, POLLOUT, deadline) < 0) return -1;
      continue;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Receives exactly n bytes before the deadline. Returns 0, or -1 (errno set; EPIPE on early EOF). */
static int recv_exact(int fd, unsigned char *p, size_t n, int64_t deadline) {
  while (n > 0) {
    ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
    if (r == 0) {
      errno = EPIPE;
      return -1;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
      if (wait_fd(fd, POLLIN, deadline) < 0) return -1;
      continue;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* Receives one "str" of at most `max` bytes into a fresh buffer. */
static int recv_str(int fd, struct buf *out, uint32_t max, int64_t deadline) {
  unsigned char len[4];
  if (recv_exact(fd, len, 4, deadline) < 0) return -1;
  uint32_t n = get_u32(len);
  if (n > max) {
    errno = EMSGSIZE;
    return -1;
  }
  buf_reserve(out, n);
  if (recv_exact(fd, out->data, n, deadline) < 0) return -1;
  out->len = n;
  return 0;
}

/*
 * Reads all of stdin. A runtime asking VERSION by hand may leave stdin on a terminal: then
 * nothing is read, as the Node entry does. A stdin that cannot be read counts as empty.
 */
static void read_stdin(struct buf *in) {
  const char *cmd = getenv("CNI_COMMAND");
  if (cmd && strcmp(cmd, "VERSION") == 0 && isatty(0)) return;
  for (;;) {
    buf_reserve(in, 65536);
    ssize_t r = read(0, in->data + in->len, in->cap - in->len);
    if (r == 0) return;
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        /* A non-blocking stdin: wait for more (no deadline: a plugin waits for its input). */
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR) return;
        continue;
      }
      return;
    }
    in->len += (size_t)r;
  }
}

/*
 * Replaces this process with the standalone plugin `<dir of /proc/self/exe>/<name>.sea`. If
 * `in` is not NULL, stdin was consumed and is supplied again from a memfd (or a pipe).
 * Only returns by exiting with a CNI error.
 */
static void exec_standalone(char **argv, const struct buf *in) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    /* No /proc: argv[0]'s directory is the best guess left. */
    if (!argv[0] || !strchr(argv[0], '/')) fail_cni(in, 999, "podnet cni shim: cannot find its own directory (/proc/self/exe: %s)", strerror(errno));
    snprintf(self, sizeof self, "%s", argv[0]);
    n = (ssize_t)strlen(self);
  }
  self[n] = '\0';
  /* The directory only: the link may read ".../podnet-bridge (deleted)" during an upgrade. */
  char *slash = strrchr(self, '/');
  if (!slash) fail_cni(in, 999, "podnet cni shim: odd executable path %s", self);
  *slash = '\0';
  char path[PATH_MAX];
  if ((size_t)snprintf(path, sizeof path, "%s/%s.sea", *self ? self : "", plugin_name) >= sizeof path) {
    fail_cni(in, 999, "podnet cni shim: path of %s.sea is too long", plugin_name);
  }

  if (in) {
    int fd = memfd_create("podnet-cni-stdin", MFD_CLOEXEC);
    if (fd >= 0) {
      if (write_all(fd, in->data, in->len) < 0 || lseek(fd, 0, SEEK_SET) != 0) {
        fail_cni(in, 999, "podnet cni shim: cannot buffer stdin for %s: %s", path, strerror(errno));
      }
    } else {
      /* No memfd: a pipe made large enough to hold everything, so no writer process is needed. */
      int p[2];
      if (pipe2(p, O_CLOEXEC) < 0) fail_cni(in, 999, "podnet cni shim: pipe: %s", strerror(errno));
      if (in->len > 65536 && fcntl(p[1], F_SETPIPE_SZ, (int)in->len) < 0) {
        fail_cni(in, 999, "podnet cni shim: %zu bytes of stdin do not fit in a pipe: %s", in->len, strerror(errno));
      }
      if (write_all(p[1], in->data, in->len) < 0) fail_cni(in, 999, "podnet cni shim: pipe: %s", strerror(errno));
      close(p[1]);
      fd = p[0];
    }
    /* dup2 clears close-on-exec on fd 0, so the SEA inherits it. */
    if (dup2(fd, 0) < 0) fail_cni(in, 999, "podnet cni shim: dup2: %s", strerror(errno));
    close(fd);
  }
  execve(path, argv, environ);
  fail_cni(in, 999, "podnet cni shim: no server answered and %s cannot run: %s", path, strerror(errno));
}

/*
 * Connects to the server. Returns the socket, or -1 when no server is there (no socket file,
 * nobody listening, path too long, not allowed): the caller then falls back.
 */
static int connect_server(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) return -1;
  memcpy(addr.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  int r;
  do r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  while (r < 0 && errno == EINTR);
  /* A full listen backlog gives EAGAIN on a non-blocking unix socket: also "not answering". */
  if (r < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int main(int argc, char **argv) {
  (void)argc;
  if (argv[0] && argv[0][0]) {
    const char *base = strrchr(argv[0], '/');
    plugin_name = base ? base + 1 : argv[0];
  }
  size_t name_len = strlen(plugin_name);
  if (name_len == 0 || name_len > MAX_NAME) {
    fail_cni(NULL, 999, "podnet cni shim: cannot tell the plugin name from argv[0]");
  }

  const char *socket_path = getenv("PODNET_CNI_SOCKET");
  if (!socket_path || !*socket_path) socket_path = DEFAULT_SOCKET;

  /* Without /proc the shim cannot say which namespace it is in: leave the call to the SEA. */
  struct stat ns;
  if (stat("/proc/self/ns/net", &ns) < 0) exec_standalone(argv, NULL);

  int fd = connect_server(socket_path);
  if (fd < 0) exec_standalone(argv, NULL); /* stdin untouched */

  struct buf in = {0};
  read_stdin(&in);
  if (in.len > MAX_STDIN) {
    close(fd);
    exec_standalone(argv, &in);
  }

  /* The request body, then the envelope in front of it. */
  struct buf body = {0};
  buf_u64(&body, (uint64_t)ns.st_dev);
  buf_u64(&body, (uint64_t)ns.st_ino);
  buf_str(&body, plugin_name, name_len);
  size_t count_at = body.len;
  buf_u32(&body, 0);
  uint32_t count = 0;
  for (char **e = environ; *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq || eq == *e) continue; /* Not KEY=VALUE: Node would not see it either. */
    if (count == MAX_ENV_ENTRIES) {
      close(fd);
      exec_standalone(argv, &in);
    }
    buf_str(&body, *e, strlen(*e));
    count++;
  }
  body.data[count_at] = (unsigned char)count;
  body.data[count_at + 1] = (unsigned char)(count >> 8);
  body.data[count_at + 2] = (unsigned char)(count >> 16);
  body.data[count_at + 3] = (unsigned char)(count >> 24);
  buf_str(&body, in.data, in.len);
  if (body.len > MAX_BODY) {
    close(fd);
    exec_standalone(argv, &in);
  }
  struct buf req = {0};
  buf_put(&req, "PNCQ", 4);
  buf_u32(&req, PROTOCOL_VERSION);
  buf_u32(&req, (uint32_t)body.len);
  buf_put(&req, body.data, body.len);
  free(body.data);

  int64_t deadline = now_ms() + TIMEOUT_MS;
  /*
   * A send error is not final: a server that stops reading and closes its end may still have
   * left a reply to read. The reply decides; without one, the send error is what is reported.
   */
  int send_errno = send_all(fd, req.data, req.len, deadline) < 0 ? errno : 0;
  free(req.data);

  unsigned char head[16];
  if (recv_exact(fd, head, sizeof head, deadline) < 0) {
    int e = send_errno ? send_errno : errno;
    fail_cni(&in, 11, "podnet cni-server at %s did not answer the %s call: %s", socket_path, plugin_name, strerror(e));
  }
  if (memcmp(head, "PNCR", 4) != 0 || get_u32(head + 4) != PROTOCOL_VERSION) {
    fail_cni(&in, 11, "podnet cni-server at %s sent a reply this shim does not understand", socket_path);
  }
  uint32_t status = get_u32(head + 8);
  uint32_t exit_code = get_u32(head + 12);
  if (status == STATUS_WRONG_NETNS || status == STATUS_BAD_VERSION) {
    close(fd);
    exec_standalone(argv, &in);
  }
  if (status != STATUS_RAN || exit_code > 255) {
    fail_cni(&in, 11, "podnet cni-server at %s sent status %u, exit code %u", socket_path, status, exit_code);
  }
  struct buf out = {0}, err = {0};
  if (recv_str(fd, &out, MAX_STDOUT, deadline) < 0 || recv_str(fd, &err, MAX_STDERR, deadline) < 0) {
    fail_cni(&in, 11, "podnet cni-server at %s: reply cut short: %s", socket_path, strerror(errno));
  }
  close(fd);
  /*
   * What the plugin printed; a closed stdout or stderr does not change the exit code. SIGPIPE
   * is ignored only here, past every exec, so the SEA never inherits the changed disposition.
   */
  signal(SIGPIPE, SIG_IGN);
  (void)write_all(1, out.data, out.len);
  (void)write_all(2, err.data, err.len);
  return (int)exit_code;
}
