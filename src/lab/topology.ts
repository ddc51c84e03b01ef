/**
 * The lab's network, applied: namespaces, the switch's bridges, every host's eth0, the router
 * and the external host. All commands run inside the lab's own namespaces (`ip -n`), so the
 * root namespace is never changed; a failure part-way removes what was made.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { run } from '../kernel/index.ts';
import { ADDRESS_PLAN, type HostPlan, type LabPlan, nsPrefix, planPlug } from './plan.ts';

const NETNS_DIR = '/var/run/netns';

/** Namespaces of a lab that exist now. */
export function labNamespaces(lab: string): string[] {
  if (!existsSync(NETNS_DIR)) return [];
  const prefix = nsPrefix(lab);
  return readdirSync(NETNS_DIR).filter((n) => n.startsWith(prefix));
}

async function batch(netns: string, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  await run('ip', ['-n', netns, '-batch', '-'], { input: lines.join('\n') + '\n' });
}

async function sysctl(netns: string, key: string, value: string): Promise<void> {
  await run('ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', `${key}=${value}`]);
}

/** Switch-side port name for a host: short, unique, a valid interface name. */
export function swPort(role: string): string {
  return `p-${role}`.slice(0, 15);
}

export async function addNamespace(name: string): Promise<void> {
  await run('ip', ['netns', 'add', name]);
}

/** Plugs a host (already made namespace) into its segment of the switch. */
export async function plugHost(sw: string, host: HostPlan): Promise<void> {
  const p = planPlug(sw, host, swPort(host.role));
  await batch(sw, p.sw);
  await batch(host.netns, p.host);
}

/** Makes the lab's network: every namespace, the switch, the router, the external host. */
export async function createNetwork(plan: LabPlan, progress: (msg: string) => void = () => undefined): Promise<void> {
  const routed = plan.options.topology === 'routed';
  const all = [plan.sw, plan.rtr, plan.ext, plan.cp.netns, ...plan.nodes.map((n) => n.netns)];
  await Promise.all(all.map(addNamespace));
  progress(`${all.length} namespaces`);

  // The switch: one bridge per segment.
  const swLines = ['link set lo up', 'link add seg1 type bridge', 'link set seg1 up'];
  if (routed) swLines.push('link add seg2 type bridge', 'link set seg2 up');
  await batch(plan.sw, swLines);

  // The router: a leg in each segment and one towards the "internet" (the external host).
  const rtrHost: HostPlan = { role: 'rtr', netns: plan.rtr, address: `${ADDRESS_PLAN.router}/24`, gateway: '', segment: 'seg1' };
  await batch(plan.sw, [`link add ${swPort('rtr')} type veth peer name eth0 netns ${plan.rtr}`, `link set ${swPort('rtr')} master seg1 up`]);
  const rtrLines = ['link set lo up', 'link set eth0 up', `addr add ${rtrHost.address} dev eth0`];
  if (routed) {
    await batch(plan.sw, [`link add ${swPort('rtr2')} type veth peer name eth1 netns ${plan.rtr}`, `link set ${swPort('rtr2')} master seg2 up`]);
    rtrLines.push('link set eth1 up', `addr add ${ADDRESS_PLAN.router2}/24 dev eth1`);
  }
  rtrLines.push(`link add inet0 type veth peer name eth0 netns ${plan.ext}`, 'link set inet0 up', `addr add ${ADDRESS_PLAN.internetRouter}/24 dev inet0`);
  await batch(plan.rtr, rtrLines);
  await sysctl(plan.rtr, 'net.ipv4.ip_forward', '1');
  await batch(plan.ext, ['link set lo up', 'link set eth0 up', `addr add ${ADDRESS_PLAN.externalHost}/24 dev eth0`, `route add default via ${ADDRESS_PLAN.internetRouter}`]);

  // Control plane and nodes.
  await Promise.all([plan.cp, ...plan.nodes].map((h) => plugHost(plan.sw, h)));
  // Nodes forward pod traffic.
  await Promise.all(plan.nodes.map((n) => sysctl(n.netns, 'net.ipv4.ip_forward', '1')));
  progress(`switch, router, external host, control plane and ${plan.nodes.length} node(s) wired`);
}

/**
 * Deletes namespaces (and with them every link inside); missing ones are fine. One `ip -batch`
 * for all of them: a lab with hundreds of pods would otherwise start hundreds of processes.
 */
export async function deleteNamespaces(names: string[]): Promise<void> {
  if (names.length === 0) return;
  // -force: go on after a line that fails (a namespace already gone).
  await run('ip', ['-force', '-batch', '-'], { input: names.map((n) => `netns del ${n}\n`).join('') }).catch(() => undefined);
}

/** Requests made in the same tick, answered by one pass over /proc. */
let pidRequests: Array<{ name: string; resolve: (pids: number[]) => void }> = [];

function answerPidRequests(): void {
  const requests = pidRequests;
  pidRequests = [];
  // A namespace is its nsfs inode: /var/run/netns/<name> is bound to it, /proc/<pid>/ns/net points to it.
  const key = (st: { dev: number; ino: number }): string => `${st.dev}:${st.ino}`;
  const wanted = new Map<string, number[]>();
  const keys = requests.map((r) => {
    try {
      const k = key(statSync(`${NETNS_DIR}/${r.name}`));
      wanted.set(k, []);
      return k;
    } catch {
      return undefined; // Gone: no processes.
    }
  });
  if (wanted.size > 0) {
    for (const e of readdirSync('/proc')) {
      const pid = Number(e);
      if (!Number.isInteger(pid) || pid <= 1) continue;
      try {
        wanted.get(key(statSync(`/proc/${e}/ns/net`)))?.push(pid);
      } catch {
        // Exited meanwhile.
      }
    }
  }
  requests.forEach((r, i) => r.resolve(keys[i] === undefined ? [] : [...(wanted.get(keys[i]!) ?? [])]));
}

/**
 * PIDs of processes living in a namespace (the pods' and daemons' processes), as
 * `ip netns pids` finds them; calls made together share one pass over /proc.
 */
export function namespacePids(name: string): Promise<number[]> {
  return new Promise((resolve) => {
    if (pidRequests.length === 0) setImmediate(answerPidRequests);
    pidRequests.push({ name, resolve });
  });
}
