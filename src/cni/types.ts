/**
 * The CNI data model (SPEC.md 1.1.0), kept in its newest shape internally. Older versions
 * are produced only at the edge, when a result is printed (see result.ts).
 */

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  /** The netns path for interfaces inside the container; absent for host interfaces. */
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

export interface CniIPConfig {
  /** CIDR notation: 10.244.1.5/24. */
  address: string;
  gateway?: string;
  /** Index into `interfaces`. */
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface CniDNS {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIPConfig[];
  routes?: CniRoute[];
  dns?: CniDNS;
}

/** The fields every plugin's network configuration has (SPEC.md "Plugin configuration objects"). */
export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  args?: Record<string, unknown>;
  ipMasq?: boolean;
  ipam?: Record<string, unknown> & { type?: string };
  dns?: CniDNS;
  runtimeConfig?: Record<string, unknown>;
  prevResult?: unknown;
  [key: string]: unknown;
}

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC' | 'VERSION';

export interface CniArgs {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifName: string;
  /** CNI_ARGS parsed into key=value pairs. */
  args: Map<string, string>;
  path: string[];
  /** The raw config bytes (stdin), kept to hand on to a delegated IPAM plugin unchanged. */
  stdin: Buffer;
  /** The environment, kept to hand on to a delegated plugin. */
  env: NodeJS.ProcessEnv;
}

export interface Attachment {
  containerID: string;
  ifname: string;
}
