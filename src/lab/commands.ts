/**
 * The lab's kubectl-like commands: apply, delete, get, exec. They talk to the lab's etcd
 * through the unix socket in the state directory, so they need no network in the root
 * namespace; exec enters the pod's (or node's) namespaces with `ip netns exec`.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type AnyObject, type Datastore, EtcdDatastore, type Pod, type Service, isAlreadyExists, isNotFound, updateWithRetry } from '../datastore/index.ts';
import { keepAllocatedValues, validateService } from '../controller/alloc.ts';
import { LabError, nsName } from './plan.ts';
import { type Manifest, parseManifests } from './manifest.ts';
import { readState, stateDir } from './state.ts';
import { podNetns } from './runtime.ts';
import { podServiceEnv } from './envvars.ts';

export function openLab(lab: string): { ds: Datastore; close(): Promise<void> } {
  const st = readState(lab);
  if (!st) throw new LabError('PODNET_LAB_NOT_UP', `lab "${lab}" is not up: run \`podnet lab up${lab === 'podnet' ? '' : ` --name ${lab}`}\` first`);
  const ds = new EtcdDatastore({ endpoints: `unix://${st.etcdSocket}`, timeoutMs: 5000 });
  return { ds, close: () => ds.close() };
}

const KIND_WORD: Record<string, string> = { Namespace: 'namespace', Pod: 'pod', Deployment: 'deployment.apps', Service: 'service', NetworkPolicy: 'networkpolicy.networking.k8s.io' };

function refOf(m: { metadata: { name: string; namespace?: string } }): { name: string; namespace?: string } {
  return m.metadata.namespace ? { name: m.metadata.name, namespace: m.metadata.namespace } : { name: m.metadata.name };
}

/** Creates or updates every manifest; returns the pods it expects to come up. */
export async function applyManifests(ds: Datastore, manifests: Manifest[], out: (line: string) => void): Promise<void> {
  // Namespaces first, and every other object's namespace must exist (as the API server insists).
  const namespaces = new Set<string>();
  for (const m of manifests) if (m.kind === 'Namespace') namespaces.add(m.metadata.name);
  for (const m of manifests) {
    const ns = m.metadata.namespace;
    if (!ns || namespaces.has(ns)) continue;
    try {
      await ds.get('Namespace', { name: ns });
      namespaces.add(ns);
    } catch (err) {
      if (isNotFound(err)) throw new LabError('PODNET_NO_NAMESPACE', `${KIND_WORD[m.kind]}/${m.metadata.name}: namespace "${ns}" does not exist; create it first (kind: Namespace)`);
      throw err;
    }
  }
  const ordered = [...manifests].sort((a, b) => Number(b.kind === 'Namespace') - Number(a.kind === 'Namespace'));
  for (const m of ordered) {
    const kind = m.kind as AnyObject['kind'];
    const word = `${KIND_WORD[m.kind]}/${m.metadata.name}`;
    const obj = { ...m, kind } as unknown as AnyObject;
    if (m.kind === 'Service') {
      // The API server refuses a duplicate or impossible clusterIP/nodePort before storing; so does apply.
      const problems = validateService(obj as Service, (await ds.list('Service')).items);
      if (problems.length > 0) throw new LabError('PODNET_INVALID_SERVICE', `${word} is invalid: ${problems.map((p) => p.message).join('; ')}`);
    }
    try {
      await ds.create(obj);
      out(`${word} created`);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      const current = (await ds.get(kind, refOf(m))) as AnyObject;
      if (m.kind === 'Pod') {
        // Pod specs are immutable once made (as in Kubernetes): only labels and annotations change.
        const same = JSON.stringify(current.metadata.labels ?? {}) === JSON.stringify(m.metadata.labels ?? {});
        if (same) {
          out(`${word} unchanged`);
          continue;
        }
        await ds.update({ ...current, metadata: { ...current.metadata, labels: m.metadata.labels, annotations: m.metadata.annotations } } as AnyObject);
        out(`${word} configured`);
        continue;
      }
      let next = { ...current, metadata: { ...current.metadata, labels: m.metadata.labels, annotations: m.metadata.annotations }, spec: { ...(current.spec as object), ...(m.spec as object) } } as AnyObject;
      // A re-applied Service keeps the clusterIP and node ports it was given (as kube-apiserver does).
      if (m.kind === 'Service') next = keepAllocatedValues(current as Service, next as Service);
      if (JSON.stringify(next.spec) === JSON.stringify(current.spec) && JSON.stringify(next.metadata.labels) === JSON.stringify(current.metadata.labels)) {
        out(`${word} unchanged`);
        continue;
      }
      await ds.update(next);
      out(`${word} configured`);
    }
  }
}

/**
 * Marks a scheduled pod for graceful deletion. Its kubelet writes the pod's status all the
 * while (a crash-looping pod often), so the write is retried on a conflict rather than
 * failing the user's `delete`.
 */
async function markDeleted(ds: Datastore, pod: Pod): Promise<void> {
  const stamp = new Date().toISOString();
  await updateWithRetry(ds, 'Pod', refOf(pod), (p) => {
    if (p.metadata.uid !== pod.metadata.uid || p.metadata.deletionTimestamp) return p;
    p.metadata.deletionTimestamp = stamp;
  });
}

export async function deleteManifests(ds: Datastore, manifests: Manifest[], out: (line: string) => void): Promise<void> {
  for (const m of [...manifests].reverse()) {
    const word = `${KIND_WORD[m.kind]}/${m.metadata.name}`;
    const kind = m.kind as AnyObject['kind'];
    try {
      if (m.kind === 'Pod') {
        const pod = await ds.get('Pod', refOf(m));
        if (pod.spec?.nodeName) {
          // Graceful: the pod's kubelet stops it, detaches it and removes the object.
          await markDeleted(ds, pod);
        } else {
          await ds.delete('Pod', refOf(m));
        }
      } else if (m.kind === 'Namespace') {
        for (const k of ['Deployment', 'Service', 'NetworkPolicy', 'EndpointSlice'] as const) {
          const items = await ds.list(k as 'Service', { namespace: m.metadata.name });
          for (const i of items.items) await ds.delete(k as 'Service', refOf(i)).catch(() => undefined);
        }
        const pods = await ds.list('Pod', { namespace: m.metadata.name });
        for (const p of pods.items) await markDeleted(ds, p).catch((err) => (isNotFound(err) ? undefined : Promise.reject(err)));
        await ds.delete('Namespace', refOf(m));
      } else {
        await ds.delete(kind, refOf(m));
      }
      out(`${word} deleted`);
    } catch (err) {
      if (isNotFound(err)) throw new LabError('PODNET_NOT_FOUND', `${word}${m.metadata.namespace ? ` in namespace ${m.metadata.namespace}` : ''} not found`);
      throw err;
    }
  }
}

function ready(p: any): boolean {
  return p.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** The last lines of a container's log in the lab's state directory. */
export function containerLogTail(lab: string, pod: any, container: string, lines = 5): string {
  const file = join(stateDir(lab), 'nodes', String(pod.spec?.nodeName ?? ''), 'pods', `${pod.metadata.namespace}_${pod.metadata.name}`, `${container}.log`);
  if (!existsSync(file)) return '';
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

/**
 * Waits until the pods of the applied manifests (and of their Deployments) run, and turns a
 * pod that cannot start into an error that says why (sandbox failure, a command that exits).
 */
export async function waitForPods(lab: string, ds: Datastore, manifests: Manifest[], timeoutMs: number): Promise<void> {
  const wanted = manifests.filter((m) => m.kind === 'Pod' || m.kind === 'Deployment');
  if (wanted.length === 0) return;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const problems: string[] = [];
    let pending = 0;
    for (const m of wanted) {
      let pods: any[] = [];
      if (m.kind === 'Pod') {
        try {
          pods = [await ds.get('Pod', refOf(m))];
        } catch {
          pending++;
          continue;
        }
      } else {
        const dep = await ds.get('Deployment' as 'Pod', refOf(m)).catch(() => undefined);
        if (!dep) continue;
        pods = (await ds.list('Pod', { namespace: m.metadata.namespace })).items.filter((p) => p.metadata.ownerReferences?.some((o) => o.uid === dep.metadata.uid) && !p.metadata.deletionTimestamp);
        const want = (dep as any).spec?.replicas ?? 1;
        if (pods.length < want) pending++;
      }
      for (const p of pods) {
        if (p.status?.phase === 'Failed') {
          problems.push(`pod/${p.metadata.name}: ${p.status?.message ?? p.status?.reason ?? 'failed'}`);
          continue;
        }
        const crashed = (p.status?.containerStatuses ?? []).find((c: any) => c.restartCount > 0 || c.state?.terminated || c.state?.waiting?.reason === 'CrashLoopBackOff');
        if (crashed && !ready(p)) {
          const tail = containerLogTail(lab, p, crashed.name);
          problems.push(`pod/${p.metadata.name}: container ${crashed.name} keeps exiting (${crashed.state?.waiting?.message ?? crashed.state?.terminated?.reason ?? 'exited'})${tail ? `; its last output:\n    ${tail.replaceAll('\n', '\n    ')}` : ''}`);
          continue;
        }
        if (!ready(p)) pending++;
      }
    }
    if (problems.length > 0) throw new LabError('PODNET_POD_FAILED', problems.join('\n'));
    if (pending === 0) return;
    if (Date.now() > deadline) throw new LabError('PODNET_POD_TIMEOUT', `pods not ready after ${timeoutMs / 1000}s: see \`podnet lab get pods -A\` and the logs in ${join(stateDir(lab), 'logs')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function readManifestInput(file: string): string {
  if (file === '-') return readFileSync(0, 'utf8');
  if (!existsSync(file)) throw new LabError('PODNET_NO_FILE', `file ${file} does not exist`);
  return readFileSync(file, 'utf8');
}

export { parseManifests };

/** The environment of the pod's first container process, when it runs in the pod's network namespace. */
function containerEnv(lab: string, pod: Pod, netns: string): Record<string, string> | undefined {
  const container = pod.spec?.containers?.[0]?.name;
  if (!container) return undefined;
  try {
    const pidFile = join(stateDir(lab), 'nodes', String(pod.spec?.nodeName ?? ''), 'pods', `${pod.metadata.namespace}_${pod.metadata.name}`, `${container}.pid`);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    if (!(pid > 0) || statSync(`/proc/${pid}/ns/net`).ino !== statSync(`/var/run/netns/${netns}`).ino) return undefined;
    const env: Record<string, string> = {};
    for (const kv of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
      const i = kv.indexOf('=');
      if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    return Object.keys(env).length > 0 ? env : undefined;
  } catch {
    return undefined; // not started (yet), exited, or another pod's file
  }
}

/** Runs a command in a pod's namespaces with its env; resolves to the command's exit code. */
export async function execIn(lab: string, ds: Datastore, target: { pod?: string; namespace?: string; node?: string; ext?: boolean }, argv: string[]): Promise<number> {
  if (argv.length === 0) throw new LabError('PODNET_EXEC_USAGE', 'nothing to run: podnet lab exec POD -- CMD [ARG…]');
  let netns: string;
  const env: Record<string, string> = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', TERM: process.env.TERM ?? 'dumb' };
  if (target.ext) netns = nsName(lab, 'ext');
  else if (target.node) {
    netns = nsName(lab, target.node);
    if (!existsSync(`/var/run/netns/${netns}`)) throw new LabError('PODNET_NOT_FOUND', `node ${target.node} not found in lab "${lab}"`);
  } else {
    let pod;
    try {
      pod = await ds.get('Pod', { namespace: target.namespace ?? 'default', name: target.pod ?? '' });
    } catch (err) {
      if (isNotFound(err)) throw new LabError('PODNET_NOT_FOUND', `pod ${target.pod} not found in namespace ${target.namespace ?? 'default'}`);
      throw err;
    }
    netns = podNetns(lab, pod.metadata.uid ?? '');
    if (!existsSync(`/var/run/netns/${netns}`)) throw new LabError('PODNET_POD_NOT_RUNNING', `pod ${target.pod} has no sandbox (yet): its phase is ${pod.status?.phase ?? 'Pending'}`);
    // The environment the kubelet gave the pod's first container, read from its process: the
    // service variables are those that existed when the container started (which creation
    // timestamps, to the second, cannot tell). Worked out again only when it does not run.
    const started = containerEnv(lab, pod, netns);
    if (started) Object.assign(env, started, { TERM: env.TERM });
    else {
      Object.assign(env, { HOSTNAME: pod.spec?.hostname ?? pod.metadata.name, POD_NAME: pod.metadata.name, POD_NAMESPACE: pod.metadata.namespace ?? 'default', POD_IP: pod.status?.podIP ?? '' });
      Object.assign(env, podServiceEnv(pod, (await ds.list('Service')).items));
      for (const e of pod.spec?.containers?.[0]?.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
    }
  }
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', netns, 'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...argv], { stdio: 'inherit' });
    child.on('close', (code, sig) => resolve(code ?? (sig ? 128 + 9 : 1)));
  });
}
