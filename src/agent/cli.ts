/** `podnet agent` command-line options → runAgent. */
import { parseArgs } from 'node:util';
import { PodnetError } from '../errors/index.ts';
import type { EtcdDatastore } from '../datastore/index.ts';
import { EtcdSubnetManager } from '../subnet/index.ts';
import { runAgent } from './daemon.ts';
import { type Backend, TX_CHECKSUM_MODES, type TxChecksumMode } from './types.ts';

export async function agentCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'node-name': { type: 'string' },
      etcd: { type: 'string' },
      backend: { type: 'string', default: 'vxlan' },
      'cluster-cidr': { type: 'string', default: '10.244.0.0/16' },
      'subnet-len': { type: 'string', default: '24' },
      iface: { type: 'string', default: 'eth0' },
      'cni-conf-dir': { type: 'string', default: '/etc/cni/net.d' },
      'subnet-file': { type: 'string', default: '/run/podnet/subnet.json' },
      'ipam-data-dir': { type: 'string' },
      'preferred-subnet': { type: 'string' },
      'cni-socket': { type: 'string' },
      'metrics-address': { type: 'string', default: '0.0.0.0:9402' },
      resync: { type: 'string', default: '5' },
      'proxy-mode': { type: 'string', default: 'nftables' },
      'vxlan-tx-checksum': { type: 'string', default: 'auto' },
    },
    strict: true,
  });
  const usage = 'usage: podnet agent --node-name NAME --etcd URL [--backend host-gw|vxlan] [--cluster-cidr CIDR] [--subnet-len N] [--iface IF] [--cni-conf-dir DIR] [--subnet-file FILE] [--metrics-address HOST:PORT] [--resync SECONDS] [--proxy-mode nftables|iptables|none] [--vxlan-tx-checksum auto|off|on]';
  if (!values['node-name'] || !values.etcd) throw new PodnetError('PODNET_USAGE', usage);
  const backend = values.backend as Backend;
  if (backend !== 'host-gw' && backend !== 'vxlan') throw new PodnetError('PODNET_USAGE', `--backend must be host-gw or vxlan, not "${values.backend}"`);
  const proxyMode = values['proxy-mode'] as 'nftables' | 'iptables' | 'none';
  if (!['nftables', 'iptables', 'none'].includes(proxyMode)) throw new PodnetError('PODNET_USAGE', `--proxy-mode must be nftables, iptables or none, not "${proxyMode}"`);
  const txChecksum = values['vxlan-tx-checksum'] as TxChecksumMode;
  if (!TX_CHECKSUM_MODES.includes(txChecksum)) throw new PodnetError('PODNET_USAGE', `--vxlan-tx-checksum must be auto, off or on, not "${txChecksum}"`);
  const [host = '0.0.0.0', portText = ''] = values['metrics-address'].split(/:(?=[^:]*$)/);
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new PodnetError('PODNET_USAGE', `--metrics-address "${values['metrics-address']}" is not HOST:PORT`);
  await runAgent({
    nodeName: values['node-name'],
    etcd: values.etcd,
    backend,
    clusterCIDR: values['cluster-cidr'],
    subnetLen: Number(values['subnet-len']),
    iface: values.iface,
    cniConfDir: values['cni-conf-dir'],
    subnetFile: values['subnet-file'],
    ...(values['ipam-data-dir'] ? { ipamDataDir: values['ipam-data-dir'] } : {}),
    ...(values['preferred-subnet'] ? { preferredSubnet: values['preferred-subnet'] } : {}),
    ...(values['cni-socket'] ? { cniSocket: values['cni-socket'] } : {}),
    metricsHost: host,
    metricsPort: port,
    resyncMs: Number(values.resync) * 1000,
    proxyMode,
    vxlanTxChecksum: txChecksum,
    subnets: (ds, cfg) => new EtcdSubnetManager({ client: (ds as EtcdDatastore).client, clusterCIDR: cfg.clusterCIDR, subnetLen: cfg.subnetLen }),
  });
}
