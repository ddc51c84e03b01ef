import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { CniError } from './errors.ts';
import { dispatch, parseCniArgs, type CniPlugin, type Outcome } from './skel.ts';
import type { Attachment, CniArgs, CniResult, NetConf } from './types.ts';
import { LATEST, SUPPORTED_VERSIONS } from './version.ts';

interface Call {
  verb: 'parseConfig' | 'add' | 'del' | 'check' | 'status' | 'gc';
  args?: CniArgs;
  valid?: Attachment[];
}

/** A plugin that records what it was asked and answers with a fixed result. */
function fakePlugin(opts: { fail?: unknown } = {}): CniPlugin & { calls: Call[] } {
  const calls: Call[] = [];
  const act = async (): Promise<void> => {
    if (opts.fail !== undefined) throw opts.fail;
  };
  return {
    calls,
    about: 'fake plugin',
    parseConfig: (raw) => {
      calls.push({ verb: 'parseConfig' });
      return raw as NetConf;
    },
    add: async (args): Promise<CniResult> => {
      calls.push({ verb: 'add', args });
      await act();
      return {
        cniVersion: '1.1.0',
        interfaces: [{ name: 'eth0', mac: '0a:58:0a:f4:01:05', mtu: 1450, sandbox: args.netns }],
        ips: [{ address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 0 }],
      };
    },
    del: async (args) => {
      calls.push({ verb: 'del', args });
      await act();
    },
    check: async (args) => {
      calls.push({ verb: 'check', args });
      await act();
    },
    status: async (args) => {
      calls.push({ verb: 'status', args });
      await act();
    },
    gc: async (args, _conf, valid) => {
      calls.push({ verb: 'gc', args, valid });
      await act();
    },
  };
}

const ADD_ENV = {
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: 'abc123',
  CNI_NETNS: '/var/run/netns/pod1',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin',
};

const conf = (over: Record<string, unknown> = {}): Buffer =>
  Buffer.from(JSON.stringify({ cniVersion: '1.1.0', name: 'podnet', type: 'fake', ...over }));

/** Checks an error outcome is one JSON object line with cniVersion, code and msg, and returns it. */
function errorObject(out: Outcome): { cniVersion: string; code: number; msg: string; details?: string } {
  assert.notEqual(out.exitCode, 0, 'an error exits non-zero');
  assert.ok(out.stdout.endsWith('\n'), 'the output ends with a newline');
  assert.equal(out.stdout.trimEnd().split('\n').length, 1, 'the output is one line');
  const obj = JSON.parse(out.stdout) as Record<string, unknown>;
  assert.equal(typeof obj, 'object');
  assert.equal(typeof obj.cniVersion, 'string');
  assert.equal(typeof obj.code, 'number');
  assert.equal(typeof obj.msg, 'string');
  assert.ok((obj.msg as string).length > 0, 'the message is not empty');
  for (const key of Object.keys(obj)) assert.ok(['cniVersion', 'code', 'msg', 'details'].includes(key), `unexpected key ${key}`);
  return obj as { cniVersion: string; code: number; msg: string; details?: string };
}

describe('dispatch refuses bad input before calling the plugin', () => {
  const cases: Array<{
    name: string;
    env: Record<string, string>;
    stdin: Buffer;
    code: number;
    cniVersion?: string;
    msg?: RegExp;
    /** Only the (pure) config parser may have run. */
    configParsed?: boolean;
  }> = [
    { name: 'a missing CNI_COMMAND', env: { ...ADD_ENV, CNI_COMMAND: '' }, stdin: conf(), code: 4, msg: /CNI_COMMAND/ },
    { name: 'an unknown CNI_COMMAND', env: { ...ADD_ENV, CNI_COMMAND: 'UPDATE' }, stdin: conf(), code: 4, msg: /UPDATE/ },
    { name: 'a lower-case CNI_COMMAND', env: { ...ADD_ENV, CNI_COMMAND: 'add' }, stdin: conf(), code: 4 },
    { name: 'ADD without CNI_NETNS', env: { ...ADD_ENV, CNI_NETNS: '' }, stdin: conf(), code: 4, msg: /CNI_NETNS/ },
    { name: 'CHECK without CNI_NETNS', env: { ...ADD_ENV, CNI_COMMAND: 'CHECK', CNI_NETNS: '' }, stdin: conf(), code: 4 },
    { name: 'a relative CNI_NETNS', env: { ...ADD_ENV, CNI_NETNS: 'netns/pod1' }, stdin: conf(), code: 4, msg: /absolute/ },
    { name: 'ADD without CNI_CONTAINERID', env: { ...ADD_ENV, CNI_CONTAINERID: '' }, stdin: conf(), code: 4, msg: /CNI_CONTAINERID/ },
    { name: 'DEL without CNI_IFNAME', env: { ...ADD_ENV, CNI_COMMAND: 'DEL', CNI_IFNAME: '' }, stdin: conf(), code: 4, msg: /CNI_IFNAME/ },
    { name: 'ADD without CNI_PATH', env: { ...ADD_ENV, CNI_PATH: '' }, stdin: conf(), code: 4, msg: /CNI_PATH/ },
    { name: 'a CNI_CONTAINERID starting with a dash', env: { ...ADD_ENV, CNI_CONTAINERID: '-abc' }, stdin: conf(), code: 4 },
    { name: 'a CNI_CONTAINERID with a slash', env: { ...ADD_ENV, CNI_CONTAINERID: 'abc/../x' }, stdin: conf(), code: 4 },
    { name: 'a CNI_CONTAINERID with a space', env: { ...ADD_ENV, CNI_CONTAINERID: 'abc 123' }, stdin: conf(), code: 4 },
    { name: 'a CNI_IFNAME longer than 15 bytes', env: { ...ADD_ENV, CNI_IFNAME: 'eth0123456789012' }, stdin: conf(), code: 4 },
    { name: 'a CNI_IFNAME with a slash', env: { ...ADD_ENV, CNI_IFNAME: 'eth/0' }, stdin: conf(), code: 4 },
    { name: 'a CNI_IFNAME of "."', env: { ...ADD_ENV, CNI_IFNAME: '.' }, stdin: conf(), code: 4 },
    { name: 'a CNI_ARGS pair without "="', env: { ...ADD_ENV, CNI_ARGS: 'IgnoreUnknown' }, stdin: conf(), code: 4, msg: /CNI_ARGS/ },
    { name: 'stdin that is not JSON', env: ADD_ENV, stdin: Buffer.from('{"cniVersion": '), code: 6, cniVersion: LATEST },
    { name: 'empty stdin', env: ADD_ENV, stdin: Buffer.alloc(0), code: 6 },
    { name: 'stdin that is a JSON list', env: ADD_ENV, stdin: Buffer.from('[]'), code: 6 },
    { name: 'an unsupported cniVersion', env: ADD_ENV, stdin: conf({ cniVersion: '0.2.0' }), code: 1, cniVersion: LATEST, msg: /0\.2\.0/ },
    { name: 'a missing cniVersion', env: ADD_ENV, stdin: conf({ cniVersion: undefined }), code: 1 },
    { name: 'a missing network name', env: ADD_ENV, stdin: conf({ name: undefined }), code: 7, msg: /network name/ },
    { name: 'a network name with a slash', env: ADD_ENV, stdin: conf({ name: '../etc' }), code: 7, msg: /network name/ },
    { name: 'a network name that is not a string', env: ADD_ENV, stdin: conf({ name: 42 }), code: 7 },
    { name: 'a missing plugin type', env: ADD_ENV, stdin: conf({ type: '' }), code: 7, msg: /type/ },
    { name: 'STATUS with cniVersion 0.4.0', env: { CNI_COMMAND: 'STATUS' }, stdin: conf({ cniVersion: '0.4.0' }), code: 1, cniVersion: '0.4.0', msg: /STATUS/ },
    { name: 'STATUS with cniVersion 1.0.0', env: { CNI_COMMAND: 'STATUS' }, stdin: conf({ cniVersion: '1.0.0' }), code: 1, cniVersion: '1.0.0' },
    { name: 'GC with cniVersion 0.4.0', env: { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' }, stdin: conf({ cniVersion: '0.4.0' }), code: 1, cniVersion: '0.4.0', msg: /GC/ },
    {
      name: 'GC with valid attachments that are not a list',
      env: { CNI_COMMAND: 'GC' },
      stdin: conf({ 'cni.dev/valid-attachments': 'all' }),
      code: 7,
      configParsed: true,
    },
  ];
  for (const c of cases) {
    test(`${c.name} gives code ${c.code}`, async () => {
      const plugin = fakePlugin();
      const out = await dispatch(plugin, c.env, c.stdin);
      const err = errorObject(out);
      assert.equal(err.code, c.code, err.msg);
      if (c.cniVersion !== undefined) assert.equal(err.cniVersion, c.cniVersion);
      if (c.msg) assert.match(err.msg, c.msg);
      const expected = c.configParsed ? ['parseConfig'] : [];
      assert.deepEqual(plugin.calls.map((call) => call.verb), expected, 'no handler was called');
    });
  }
});

describe('dispatch runs the handler for good input', () => {
  test('ADD passes the parsed environment to the plugin and prints its result', async () => {
    const plugin = fakePlugin();
    const out = await dispatch(plugin, { ...ADD_ENV, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web-0', CNI_PATH: '/opt/cni/bin::/usr/lib/cni' }, conf());
    assert.equal(out.exitCode, 0);
    assert.deepEqual(plugin.calls.map((c) => c.verb), ['parseConfig', 'add']);
    const args = plugin.calls[1]?.args;
    assert.ok(args);
    assert.equal(args.command, 'ADD');
    assert.equal(args.containerId, 'abc123');
    assert.equal(args.netns, '/var/run/netns/pod1');
    assert.equal(args.ifName, 'eth0');
    assert.deepEqual(args.path, ['/opt/cni/bin', '/usr/lib/cni']);
    assert.equal(args.args.get('K8S_POD_NAME'), 'web-0');
    const result = JSON.parse(out.stdout) as Record<string, unknown>;
    assert.equal(result.cniVersion, '1.1.0');
    assert.deepEqual(result.ips, [{ address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 0 }]);
  });

  test('ADD prints the result in the version the configuration names', async () => {
    const out = await dispatch(fakePlugin(), ADD_ENV, conf({ cniVersion: '0.4.0' }));
    assert.equal(out.exitCode, 0);
    const result = JSON.parse(out.stdout) as { cniVersion: string; ips: Array<Record<string, unknown>>; interfaces: Array<Record<string, unknown>> };
    assert.equal(result.cniVersion, '0.4.0');
    assert.equal(result.ips[0]?.version, '4');
    assert.equal(result.interfaces[0]?.mtu, undefined);
  });

  test('DEL needs no CNI_NETNS and prints nothing', async () => {
    const plugin = fakePlugin();
    const out = await dispatch(plugin, { ...ADD_ENV, CNI_COMMAND: 'DEL', CNI_NETNS: '' }, conf());
    assert.deepEqual(out, { stdout: '', exitCode: 0 });
    assert.deepEqual(plugin.calls.map((c) => c.verb), ['parseConfig', 'del']);
  });

  test('STATUS with cniVersion 1.1.0 needs no container variables', async () => {
    const plugin = fakePlugin();
    const out = await dispatch(plugin, { CNI_COMMAND: 'STATUS' }, conf());
    assert.deepEqual(out, { stdout: '', exitCode: 0 });
    assert.deepEqual(plugin.calls.map((c) => c.verb), ['parseConfig', 'status']);
  });

  test('GC hands the valid attachments to the plugin', async () => {
    const plugin = fakePlugin();
    const valid = [
      { containerID: 'abc', ifname: 'eth0' },
      { containerID: 'def', ifname: 'net1' },
    ];
    const out = await dispatch(plugin, { CNI_COMMAND: 'GC' }, conf({ 'cni.dev/valid-attachments': valid }));
    assert.equal(out.exitCode, 0);
    assert.deepEqual(plugin.calls[1]?.valid, valid);
  });

  test('a CniError thrown by a handler is printed with its code, message and details', async () => {
    const plugin = fakePlugin({ fail: new CniError(100, 'no IP addresses left', 'free some') });
    const err = errorObject(await dispatch(plugin, ADD_ENV, conf({ cniVersion: '1.0.0' })));
    assert.deepEqual(err, { cniVersion: '1.0.0', code: 100, msg: 'no IP addresses left', details: 'free some' });
  });

  test('an unexpected exception becomes one internal error object (code 999)', async () => {
    const plugin = fakePlugin({ fail: new TypeError('x is undefined') });
    const err = errorObject(await dispatch(plugin, ADD_ENV, conf()));
    assert.equal(err.code, 999);
    assert.match(err.msg, /x is undefined/);
  });

  test('a system call failure becomes an I/O error (code 5)', async () => {
    const fail = Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
    const err = errorObject(await dispatch(fakePlugin({ fail }), ADD_ENV, conf()));
    assert.equal(err.code, 5);
  });
});

describe('dispatch answers VERSION', () => {
  const cases: Array<{ name: string; stdin: string; cniVersion: string }> = [
    { name: 'with the version stdin asks for', stdin: '{"cniVersion":"0.4.0"}', cniVersion: '0.4.0' },
    { name: 'with the latest version when stdin is empty', stdin: '', cniVersion: LATEST },
    { name: 'with the latest version when stdin is not JSON', stdin: 'garbage', cniVersion: LATEST },
    { name: 'with the latest version when stdin asks for an unsupported one', stdin: '{"cniVersion":"9.9.9"}', cniVersion: LATEST },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const plugin = fakePlugin();
      const out = await dispatch(plugin, { CNI_COMMAND: 'VERSION' }, Buffer.from(c.stdin));
      assert.equal(out.exitCode, 0);
      assert.deepEqual(JSON.parse(out.stdout), { cniVersion: c.cniVersion, supportedVersions: [...SUPPORTED_VERSIONS] });
      assert.deepEqual(plugin.calls, []);
    });
  }

  test('even when the other variables hold placeholders, as libcni sends them', async () => {
    const env = { CNI_COMMAND: 'VERSION', CNI_NETNS: 'dummy', CNI_CONTAINERID: 'dummy/x', CNI_IFNAME: 'a/b', CNI_ARGS: 'junk' };
    const out = await dispatch(fakePlugin(), env, Buffer.from('{"cniVersion":"1.0.0"}'));
    assert.equal(out.exitCode, 0);
    assert.equal((JSON.parse(out.stdout) as { cniVersion: string }).cniVersion, '1.0.0');
  });
});

describe('parseCniArgs', () => {
  const cases: Array<{ name: string; input: string | undefined; want: Array<[string, string]> }> = [
    { name: 'nothing for an unset variable', input: undefined, want: [] },
    { name: 'nothing for an empty variable', input: '', want: [] },
    { name: 'one pair', input: 'IP=10.0.0.5', want: [['IP', '10.0.0.5']] },
    {
      name: 'the pairs the kubelet sends',
      input: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0',
      want: [
        ['IgnoreUnknown', '1'],
        ['K8S_POD_NAMESPACE', 'default'],
        ['K8S_POD_NAME', 'web-0'],
      ],
    },
    { name: 'a value that itself contains "="', input: 'K=a=b', want: [['K', 'a=b']] },
    { name: 'an empty value', input: 'K=', want: [['K', '']] },
    { name: 'empty pairs skipped', input: ';A=1;;B=2;', want: [['A', '1'], ['B', '2']] },
  ];
  for (const c of cases) {
    test(`reads ${c.name}`, () => {
      assert.deepEqual([...parseCniArgs(c.input)], c.want);
    });
  }

  for (const input of ['novalue', '=value', 'A=1;B']) {
    test(`rejects ${JSON.stringify(input)} as an invalid environment (code 4)`, () => {
      assert.throws(() => parseCniArgs(input), (err: unknown) => err instanceof CniError && err.cniCode === 4);
    });
  }
});
