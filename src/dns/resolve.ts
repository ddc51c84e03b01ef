/**
 * The cluster zone as the Kubernetes DNS specification (schema 1.1.0) lays it out, answered
 * from a RecordSource. Pure: a question in, sections out, or "forward" for names that are
 * not the cluster's. The server (server.ts) adds the header, EDNS and the wire.
 *
 *   dns-version.<zone>                              TXT "1.1.0"
 *   <svc>.<ns>.svc.<zone>                            A/AAAA cluster IP; headless: every ready
 *                                                    endpoint address; ExternalName: CNAME
 *   <host>.<svc>.<ns>.svc.<zone>                     headless: that endpoint's addresses
 *   _<port>._<proto>.<svc>.<ns>.svc.<zone>           SRV per named port (headless: one per
 *                                                    endpoint, with the endpoint's port)
 *   <a-b-c-d>.<ns>.pod.<zone>                        A (pods verified/insecure)
 *   <d>.<c>.<b>.<a>.in-addr.arpa, ip6.arpa nibbles    PTR for cluster IPs, headless endpoints, pods
 *
 * NXDOMAIN and NODATA are kept apart, as CoreDNS does on purpose: a name that exists but has
 * no record of the asked type (an IPv4-only service asked for AAAA, a namespace, `svc.<zone>`)
 * is NOERROR with an empty answer; only a name with nothing at or below it is NXDOMAIN. Both
 * carry the zone's SOA in the authority section, whose minimum field is the negative TTL
 * (RFC 2308). The exceptions are the spec's: a headless service without ready endpoints is
 * NXDOMAIN, and so is everything below it.
 *
 * An ExternalName's CNAME is followed here only while the target stays inside the zone, so
 * the resolution never depends on the outside world; the server (server.ts) resolves a target
 * outside the zone through the forwarder and appends its records.
 * A reverse name whose address the cluster does not know is forwarded (CoreDNS's
 * `fallthrough in-addr.arpa ip6.arpa`), as is every name outside the zone.
 */
import type { Answer, SrvAnswer, StringAnswer } from 'dns-packet';
import { canonicalName, dashedIP, inZone, ipFamily, parseReverseName, undashIP } from './names.ts';
import { DNS_SCHEMA_VERSION, type EndpointAddress, type PodsMode, type RecordSource, type ResolverOptions, type ServiceRecord } from './types.ts';

export type Rcode = 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED';

export interface Question {
  name: string;
  /** A type mnemonic as dns-packet spells it: 'A', 'AAAA', 'SRV', 'ANY', 'UNKNOWN_65', … */
  type: string;
  class?: string;
}

export interface Resolution {
  rcode: Rcode;
  authoritative: boolean;
  answers: Answer[];
  authorities: Answer[];
  additionals: Answer[];
}

export type Outcome = Resolution | 'forward';

/** CNAME hops followed inside the zone before giving up (a loop of ExternalNames). */
const MAX_CHAIN = 8;

/** The records at one name: all types, plus what an SRV answer's additional section wants. */
interface NameRRs {
  rrs: Answer[];
  extra: Answer[];
}

export class Resolver {
  readonly zone: string;
  readonly ttl: number;
  readonly pods: PodsMode;
  readonly #src: RecordSource;

  constructor(src: RecordSource, opts: ResolverOptions) {
    this.#src = src;
    this.zone = canonicalName(opts.zone);
    this.ttl = opts.ttl;
    this.pods = opts.pods;
  }

  /** Moves whenever the source changes, so whatever was computed from it may be stale. */
  get generation(): number {
    return this.#src.generation;
  }

  /** False until the source has its first lists (zone names are SERVFAIL until then). */
  get synced(): boolean {
    return this.#src.synced();
  }

  /** True for names the cluster answers authoritatively (the zone), false for forwarded ones. */
  isClusterName(name: string): boolean {
    return inZone(canonicalName(name), this.zone);
  }

  resolve(q: Question): Outcome {
    const name = canonicalName(q.name);
    if (!inZone(name, this.zone)) return this.#reverse(q, name);
    if (!this.#src.synced()) return empty('SERVFAIL', false);
    if (q.class !== undefined && q.class !== 'IN' && q.class !== 'ANY') return empty('REFUSED', false);

    const answers: Answer[] = [];
    let owner = q.name.replace(/\.$/, '');
    let current = name;
    for (let hop = 0; ; hop++) {
      const node = this.#lookup(current, owner);
      if (!node) return { rcode: 'NXDOMAIN', authoritative: true, answers, authorities: [this.soa()], additionals: [] };
      const cname = node.rrs.find((r) => r.type === 'CNAME') as StringAnswer | undefined;
      if (cname && q.type !== 'CNAME' && q.type !== 'ANY') {
        answers.push(cname);
        const target = cname.data;
        if (!inZone(target, this.zone) || hop + 1 >= MAX_CHAIN) return { rcode: 'NOERROR', authoritative: true, answers, authorities: [], additionals: [] };
        owner = target;
        current = target;
        continue;
      }
      const matching = q.type === 'ANY' ? node.rrs : node.rrs.filter((r) => r.type === q.type);
      answers.push(...matching);
      if (answers.length === 0) return { rcode: 'NOERROR', authoritative: true, answers, authorities: [this.soa()], additionals: [] };
      const additionals = matching.some((r) => r.type === 'SRV') ? node.extra : [];
      return { rcode: 'NOERROR', authoritative: true, answers, authorities: [], additionals };
    }
  }

  /** The zone's SOA, in the style of CoreDNS: serial = time of the last change, minimum = TTL. */
  soa(): Answer {
    return {
      name: this.zone,
      type: 'SOA',
      ttl: this.ttl,
      class: 'IN',
      data: {
        mname: `ns.dns.${this.zone}`,
        rname: `hostmaster.${this.zone}`,
        serial: this.#src.serial() >>> 0,
        refresh: 7200,
        retry: 1800,
        expire: 86400,
        minimum: this.ttl,
      },
    };
  }

  // ---------------------------------------------------------------------------------------

  #reverse(q: Question, name: string): Outcome {
    if (q.type !== 'PTR' && q.type !== 'ANY') return 'forward';
    const ip = parseReverseName(name);
    if (ip === undefined || !this.#src.synced()) return 'forward';
    const targets = this.#ptrTargets(ip);
    if (targets.length === 0) return 'forward';
    const owner = q.name.replace(/\.$/, '');
    return { rcode: 'NOERROR', authoritative: true, answers: targets.map((t) => this.#rr(owner, 'PTR', t)), authorities: [], additionals: [] };
  }

  /** Cluster IP first; else the headless endpoints with this address; else the pods. */
  #ptrTargets(ip: string): string[] {
    const svc = this.#src.serviceByIP(ip);
    if (svc) return [this.#serviceName(svc)];
    const eps = this.#src.endpointsByIP(ip).filter(({ service, address }) => service.kind === 'Headless' && usable(service, address));
    if (eps.length > 0) return eps.map(({ service, address }) => `${address.host}.${this.#serviceName(service)}`);
    if (this.pods === 'disabled') return [];
    return this.#src.podsByIP(ip).map((p) => `${dashedIP(ip)}.${p.namespace}.pod.${this.zone}`);
  }

  #serviceName(svc: ServiceRecord): string {
    return `${svc.name}.${svc.namespace}.svc.${this.zone}`;
  }

  #rr(owner: string, type: 'A' | 'AAAA' | 'CNAME' | 'PTR', data: string): StringAnswer {
    return { name: owner, type, ttl: this.ttl, class: 'IN', data };
  }

  #addressRR(owner: string, ip: string): StringAnswer {
    return this.#rr(owner, ipFamily(ip) === 4 ? 'A' : 'AAAA', ip);
  }

  /** The records at `name` (relative labels under the zone), or undefined if the name does not exist. */
  #lookup(name: string, owner: string): NameRRs | undefined {
    const rel = name === this.zone ? [] : name.slice(0, name.length - this.zone.length - (this.zone ? 1 : 0)).split('.');
    const n = rel.length;
    if (n === 0) return { rrs: [this.soa()], extra: [] };
    const top = rel[n - 1];
    if (n === 1 && top === 'dns-version') {
      return { rrs: [{ name: owner, type: 'TXT', ttl: this.ttl, class: 'IN', data: DNS_SCHEMA_VERSION }], extra: [] };
    }
    if (top === 'svc') return this.#svcTree(rel, owner);
    if (top === 'pod') return this.#podTree(rel, owner);
    return undefined;
  }

  /** Everything under svc.<zone>: rel = [... , svc, ns, 'svc'] read from the right. */
  #svcTree(rel: string[], owner: string): NameRRs | undefined {
    const n = rel.length;
    if (n === 1) return none();
    const ns = rel[n - 2] as string;
    if (n === 2) return this.#src.hasServices(ns) ? none() : undefined;
    const svc = this.#src.service(ns, rel[n - 3] as string);
    if (!svc) return undefined;
    const ready = svc.kind === 'Headless' ? this.#src.endpoints(svc.namespace, svc.name).filter((a) => usable(svc, a)) : [];
    // The spec: a headless service without ready endpoints is NXDOMAIN, and so is all below it.
    if (svc.kind === 'Headless' && ready.length === 0) return undefined;
    if (n === 3) return { rrs: this.#serviceRRs(svc, ready, owner), extra: [] };
    const label = rel[n - 4] as string;
    if (label.startsWith('_')) {
      const proto = label.slice(1);
      if (n === 4) return this.#ports(svc).some((p) => p.protocol === proto) ? none() : undefined;
      if (n === 5) return this.#srv(svc, ready, (rel[0] as string).slice(1), proto, owner, (rel[0] as string).startsWith('_'));
      return undefined;
    }
    // <host>.<svc>.<ns>.svc.<zone>: a headless service's endpoint.
    if (n !== 4 || svc.kind !== 'Headless') return undefined;
    const addrs = ready.filter((a) => a.host === label);
    if (addrs.length === 0) return undefined;
    return { rrs: uniqueIPs(addrs).map((ip) => this.#addressRR(owner, ip)), extra: [] };
  }

  #serviceRRs(svc: ServiceRecord, ready: readonly EndpointAddress[], owner: string): Answer[] {
    switch (svc.kind) {
      case 'ClusterIP':
        return svc.ips.map((ip) => this.#addressRR(owner, ip));
      case 'Headless':
        return uniqueIPs(ready).map((ip) => this.#addressRR(owner, ip));
      case 'ExternalName':
        return svc.externalName ? [this.#rr(owner, 'CNAME', svc.externalName)] : [];
    }
  }

  /** Named ports as SRV sees them: the service's, and for headless also its endpoints'. */
  #ports(svc: ServiceRecord): Array<{ name: string; protocol: string }> {
    return svc.kind === 'Headless' ? [...svc.ports, ...this.#src.endpointPorts(svc.namespace, svc.name)] : [...svc.ports];
  }

  #srv(svc: ServiceRecord, ready: readonly EndpointAddress[], port: string, proto: string, owner: string, underscored: boolean): NameRRs | undefined {
    if (!underscored) return undefined;
    const svcPort = svc.ports.find((p) => p.name === port && p.protocol === proto);
    const srv = (target: string, portNumber: number, weight: number): SrvAnswer => ({
      name: owner,
      type: 'SRV',
      ttl: this.ttl,
      class: 'IN',
      data: { priority: 0, weight, port: portNumber, target },
    });
    if (svc.kind === 'ClusterIP') {
      if (!svcPort) return undefined;
      const target = this.#serviceName(svc);
      return { rrs: [srv(target, svcPort.port, 100)], extra: svc.ips.map((ip) => this.#addressRR(target, ip)) };
    }
    if (svc.kind === 'ExternalName') {
      if (!svcPort || !svc.externalName) return undefined;
      return { rrs: [srv(svc.externalName, svcPort.port, 100)], extra: [] };
    }
    // Headless: clients connect to the endpoints themselves, so the port is the endpoints'
    // (the target port), as CoreDNS answers; the service's port number only if no slice names it.
    const epPort = this.#src.endpointPorts(svc.namespace, svc.name).find((p) => p.name === port && p.protocol === proto);
    const portNumber = epPort?.port ?? svcPort?.port;
    if (portNumber === undefined) return undefined;
    const hosts = [...new Set(ready.map((a) => a.host))];
    const weight = Math.max(1, Math.floor(100 / hosts.length));
    const base = this.#serviceName(svc);
    const rrs: Answer[] = [];
    const extra: Answer[] = [];
    for (const host of hosts) {
      const target = `${host}.${base}`;
      rrs.push(srv(target, portNumber, weight));
      for (const ip of uniqueIPs(ready.filter((a) => a.host === host))) extra.push(this.#addressRR(target, ip));
    }
    return { rrs, extra };
  }

  /** Everything under pod.<zone>: <dashed-ip>.<ns>.pod.<zone>. */
  #podTree(rel: string[], owner: string): NameRRs | undefined {
    if (this.pods === 'disabled') return undefined;
    const n = rel.length;
    if (n === 1) return none();
    const ns = rel[n - 2] as string;
    if (n === 2) return this.pods === 'insecure' || this.#src.hasPods(ns) ? none() : undefined;
    if (n !== 3) return undefined;
    const ip = undashIP(rel[0] as string);
    if (ip === undefined) return undefined;
    if (this.pods === 'verified' && !this.#src.podsByIP(ip).some((p) => p.namespace === ns)) return undefined;
    return { rrs: [this.#addressRR(owner, ip)], extra: [] };
  }
}

function none(): NameRRs {
  return { rrs: [], extra: [] };
}

function empty(rcode: Rcode, authoritative: boolean): Resolution {
  return { rcode, authoritative, answers: [], authorities: [], additionals: [] };
}

/** The spec's _ready_: ready, or any endpoint of a service that publishes unready ones. */
function usable(svc: ServiceRecord, a: EndpointAddress): boolean {
  return a.ready || svc.publishNotReady;
}

function uniqueIPs(addrs: readonly EndpointAddress[]): string[] {
  return [...new Set(addrs.map((a) => a.ip))];
}
