/**
 * `podnet quickstart` (what `npm start` runs): a 3-node lab with the sample app, then what to
 * try. A lab already up under the default name is reused rather than rebuilt.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_OPTIONS } from './plan.ts';
import { status, up } from './lab.ts';
import { applyManifests, openLab, waitForPods } from './commands.ts';
import { parseManifests } from './manifest.ts';
import { getResources } from './get.ts';

function exampleFile(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const p of [join(here, '..', 'examples', 'hello.yaml'), join(here, '..', '..', 'examples', 'hello.yaml')]) {
    try {
      readFileSync(p);
      return p;
    } catch {
      // next
    }
  }
  throw new Error('examples/hello.yaml not found next to the podnet build');
}

export async function quickstart(log: (l: string) => void = (l) => console.log(l)): Promise<void> {
  const name = DEFAULT_OPTIONS.name;
  if (!status(name).up) {
    log(`podnet lab up: a ${DEFAULT_OPTIONS.nodes}-node cluster in network namespaces (backend ${DEFAULT_OPTIONS.backend})`);
    await up(DEFAULT_OPTIONS, (m) => log(`  ${m}`));
  } else {
    log(`lab "${name}" is already up: reusing it`);
  }
  const file = exampleFile();
  const manifests = parseManifests(readFileSync(file, 'utf8'));
  const h = openLab(name);
  try {
    log(`podnet lab apply -f ${file}`);
    await applyManifests(h.ds, manifests, (l) => log(`  ${l}`));
    await waitForPods(name, h.ds, manifests, 60_000);
    log('');
    log(await getResources(h.ds, 'nodes', {}));
    log('');
    log(await getResources(h.ds, 'pods', { output: 'wide' }));
    const pods = (await h.ds.list('Pod', { namespace: 'default' })).items.filter((p) => p.metadata.labels?.app === 'web');
    const ip = pods[0]?.status?.podIP ?? '<web pod IP>';
    log(`
Things to try (podnet = node dist/podnet.mjs):
  podnet lab exec client -- curl -s http://${ip}:8080/      # a pod on another node, by its own IP, no NAT
  podnet lab exec client -- ip route                          # the pod's view: default via the node's bridge
  podnet lab exec node/node1 -- ip route                      # routes / VXLAN to the other nodes' pod subnets
  podnet lab exec node/node1 -- curl -s http://${ip}:8080/  # node to pod
  podnet lab exec client -- curl -s -m 2 http://203.0.113.10/ # egress to the "internet", masqueraded
  podnet lab get pods -A -o json                              # Kubernetes-shaped objects
  podnet lab status                                           # the daemons, their PIDs and logs
  podnet lab down                                             # remove everything`);
  } finally {
    await h.close();
  }
}
