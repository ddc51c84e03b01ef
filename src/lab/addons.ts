/**
 * The cluster add-ons `lab up` installs once the nodes are Ready: the cluster DNS, as
 * Kubernetes clusters run CoreDNS — two `podnet dns` replicas in kube-system (labels as
 * kube-dns uses), behind the Service `kube-dns` at 10.96.0.10, reached through podnet's own
 * service proxy. They forward names outside cluster.local to the external host's zone.
 */
import { ADDRESS_PLAN } from './plan.ts';
import type { Manifest } from './manifest.ts';

export function dnsAddon(cli: string, etcdURL: string): Manifest[] {
  const labels = { 'k8s-app': 'kube-dns' };
  return [
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'podnet-dns', namespace: 'kube-system', labels },
      spec: {
        replicas: 2,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            // The DNS must not resolve through itself.
            dnsPolicy: 'Default',
            // Deleted (a rollout, a drained node), a replica keeps answering for its lame-duck
            // time while the proxies drop it from kube-dns: no client query is refused.
            terminationGracePeriodSeconds: 10,
            containers: [
              {
                name: 'dns',
                command: [process.execPath, cli, 'dns', '--etcd', etcdURL, '--listen', '0.0.0.0:53', '--upstream', ADDRESS_PLAN.externalHost, '--metrics-address', '0.0.0.0:9153', '--lameduck', '3'],
                ports: [
                  { name: 'dns', containerPort: 53, protocol: 'UDP' },
                  { name: 'dns-tcp', containerPort: 53, protocol: 'TCP' },
                  { name: 'metrics', containerPort: 9153, protocol: 'TCP' },
                ],
                readinessProbe: { httpGet: { port: 9153, path: '/healthz' }, periodSeconds: 1 },
              },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kube-dns', namespace: 'kube-system', labels: { ...labels, 'kubernetes.io/name': 'podnet-dns' } },
      spec: {
        clusterIP: ADDRESS_PLAN.dnsServiceIP,
        selector: labels,
        ports: [
          { name: 'dns', port: 53, targetPort: 53, protocol: 'UDP' },
          { name: 'dns-tcp', port: 53, targetPort: 53, protocol: 'TCP' },
          { name: 'metrics', port: 9153, targetPort: 9153, protocol: 'TCP' },
        ],
      },
    },
  ];
}
