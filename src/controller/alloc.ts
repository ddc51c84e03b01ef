/**
 * Service allocation as a pure planner: what kube-apiserver's ClusterIP, NodePort allocators
 * (and a bare-metal load-balancer such as MetalLB) decide, computed from the stored Services.
 *
 * Design notes
 *
 * - One allocator. In Kubernetes the API server allocates while it stores the object, so a
 *   duplicate never gets in. Here objects are written directly (etcd, `lab apply`), so the
 *   controller is the only allocator and runs one pass at a time; what is "taken" is read from
 *   the Services themselves (spec.clusterIP, spec.ports[].nodePort, spec.healthCheckNodePort,
 *   status.loadBalancer.ingress). Nothing else is stored, so a restarted controller derives
 *   exactly the same picture and never moves an address.
 * - Duplicates are a backstop case (`lab apply` refuses them up front with validateService).
 *   When two Services claim one value, the one that held it in the previous pass (`prior`)
 *   keeps it, then a load-balancer address already in a status, then the older Service. The
 *   loser's value is taken out of its spec (the proxy and DNS program what the spec says, so a
 *   duplicate must never stay there) and a condition explains what happened and what to do.
 *   The refusal is remembered through that condition: a refused Service is not silently given
 *   another value.
 * - Dynamic values come from the upper part of each range first, as in Kubernetes (KEP-3070,
 *   KEP-3668): the lower band (16–256 addresses, 16–128 ports) is left for explicit choices
 *   such as the DNS Service's 10.96.0.10, so they rarely collide with dynamic ones. Within a
 *   band the lowest free value is taken, so results are predictable (and testable).
 * - An exhausted range is not a refusal: the Service waits (condition False, reason *Full /
 *   *Exhausted) and gets a value in the first pass after one frees.
 */
import { isDeepStrictEqual } from 'node:util';
import { PodnetError } from '../errors/index.ts';
import type { Condition, Protocol, Service, ServicePort, ServiceSpec } from '../datastore/index.ts';
import { type IP, type Prefix, contains, formatIP, formatPrefix, lastIP, parseIP, parseSubnet } from '../netaddr/index.ts';

// ---------------------------------------------------------------------------------------
// Configuration

export interface ServiceNetworkConfig {
  /** Where ClusterIPs come from (the network and, for IPv4, the broadcast address are never used). */
  serviceCIDR: string;
  /** Given out only when a Service asks for them by spec.clusterIP (the `kubernetes` and DNS Services). */
  reservedClusterIPs: readonly string[];
  /** Inclusive. */
  nodePortRange: readonly [number, number];
  /** Inclusive first and last address of the LoadBalancer pool. */
  loadBalancerPool: readonly [string, string];
}

/** Kubernetes' defaults, which are also the lab's address plan (src/lab/plan.ts ADDRESS_PLAN). */
export const DEFAULT_SERVICE_NETWORK: ServiceNetworkConfig = Object.freeze({
  serviceCIDR: '10.96.0.0/12',
  reservedClusterIPs: Object.freeze(['10.96.0.1', '10.96.0.10']),
  nodePortRange: Object.freeze([30000, 32767] as const),
  loadBalancerPool: Object.freeze(['192.168.1.200', '192.168.1.250'] as const),
});

/** A LoadBalancer Service with spec.loadBalancerClass set to anything else belongs to another implementation. */
export const LOAD_BALANCER_CLASS = 'podnet.io/lb';

export class ServiceConfigError extends PodnetError {
  override readonly name = 'ServiceConfigError';
}

/**
 * The defaults with `partial` laid over them. A different serviceCIDR without its own
 * reserved list reserves that CIDR's 1st and 10th address, as the defaults do.
 */
export function serviceNetwork(partial: Partial<ServiceNetworkConfig> = {}): ServiceNetworkConfig {
  const cfg: ServiceNetworkConfig = { ...DEFAULT_SERVICE_NETWORK, ...partial };
  if (partial.serviceCIDR !== undefined && partial.reservedClusterIPs === undefined) {
    const net = parseCIDR(cfg.serviceCIDR);
    cfg.reservedClusterIPs = [1n, 10n].map((n) => ({ family: net.ip.family, value: net.ip.value + n })).filter((ip) => contains(net, ip)).map(formatIP);
  }
  compile(cfg); // validates
  return cfg;
}

function parseCIDR(text: string): Prefix {
  try {
    return parseSubnet(text);
  } catch (err) {
    throw new ServiceConfigError('PODNET_BAD_SERVICE_CONFIG', `service CIDR "${text}" is not a network such as 10.96.0.0/12`, { cause: err });
  }
}

/** An inclusive range of values (addresses or ports as bigint) with its lower band. */
interface Span {
  first: bigint;
  last: bigint;
  /** Dynamic values start at first + offset and wrap to the lower band when the upper is full. */
  offset: bigint;
  text: string;
}

interface Compiled {
  cidr: Prefix;
  family: 4 | 6;
  cluster: Span;
  reserved: Set<bigint>;
  ports: Span;
  pool: Span;
  poolFamily: 4 | 6;
}

function bandOffset(size: bigint, min: bigint, max: bigint, step: bigint): bigint {
  if (size <= min) return 0n;
  const o = size / step;
  return o < min ? min : o > max ? max : o;
}

function compile(cfg: ServiceNetworkConfig): Compiled {
  const cidr = parseCIDR(cfg.serviceCIDR);
  const v4 = cidr.ip.family === 4;
  const first = cidr.ip.value + 1n;
  const last = lastIP(cidr).value - (v4 ? 1n : 0n);
  if (last < first) throw new ServiceConfigError('PODNET_BAD_SERVICE_CONFIG', `service CIDR ${cfg.serviceCIDR} has no usable address`);
  const size = last - cidr.ip.value + 1n;
  const reserved = new Set<bigint>();
  for (const r of cfg.reservedClusterIPs) {
    const ip = tryIP(r);
    if (!ip) throw new ServiceConfigError('PODNET_BAD_SERVICE_CONFIG', `reserved ClusterIP "${r}" is not an IP address`);
    reserved.add(ip.value);
  }
  const [lo, hi] = cfg.nodePortRange;
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi > 65535 || lo > hi) {
    throw new ServiceConfigError('PODNET_BAD_SERVICE_CONFIG', `node port range ${lo}-${hi} must be whole numbers within 1-65535, low to high`);
  }
  const [a, b] = cfg.loadBalancerPool.map(tryIP);
  if (!a || !b || a.family !== b.family || a.value > b.value) {
    throw new ServiceConfigError('PODNET_BAD_SERVICE_CONFIG', `LoadBalancer pool ${cfg.loadBalancerPool.join('-')} must be two addresses of one family, low to high`);
  }
  return {
    cidr,
    family: cidr.ip.family,
    cluster: { first, last, offset: bandOffset(size, 16n, 256n, 16n), text: formatPrefix(cidr) },
    reserved,
    ports: { first: BigInt(lo), last: BigInt(hi), offset: bandOffset(BigInt(hi - lo + 1), 16n, 128n, 32n), text: `${lo}-${hi}` },
    pool: { first: a.value, last: b.value, offset: 0n, text: `${cfg.loadBalancerPool[0]}-${cfg.loadBalancerPool[1]}` },
    poolFamily: a.family,
  };
}

function tryIP(text: unknown): IP | undefined {
  if (typeof text !== 'string') return undefined;
  try {
    return parseIP(text);
  } catch {
    return undefined;
  }
}

function inSpan(s: Span, v: bigint): boolean {
  return v >= s.first && v <= s.last;
}

/** The lowest free value of the upper band, else of the lower band. */
function nextFree(s: Span, taken: (v: bigint) => boolean): bigint | undefined {
  const start = s.first + s.offset;
  for (let v = start; v <= s.last; v++) if (!taken(v)) return v;
  for (let v = s.first; v < start && v <= s.last; v++) if (!taken(v)) return v;
  return undefined;
}

// ---------------------------------------------------------------------------------------
// What a Service needs

export type ServiceType = NonNullable<ServiceSpec['type']>;

export function serviceType(svc: Service): ServiceType {
  const t = svc.spec?.type;
  return t === 'NodePort' || t === 'LoadBalancer' || t === 'ExternalName' ? t : 'ClusterIP';
}

export function isHeadless(svc: Service): boolean {
  return serviceType(svc) !== 'ExternalName' && (svc.spec?.clusterIP === 'None' || (!svc.spec?.clusterIP && svc.spec?.clusterIPs?.[0] === 'None'));
}

/** The cluster IP the Service asks for ('' if none): spec.clusterIP, else spec.clusterIPs[0]. */
function requestedClusterIP(svc: Service): string {
  return svc.spec?.clusterIP || svc.spec?.clusterIPs?.[0] || '';
}

function needsClusterIP(svc: Service): boolean {
  return serviceType(svc) !== 'ExternalName' && !isHeadless(svc);
}

function needsNodePorts(svc: Service): boolean {
  const t = serviceType(svc);
  return t === 'NodePort' || t === 'LoadBalancer';
}

function allocatesNodePorts(svc: Service): boolean {
  return serviceType(svc) === 'NodePort' || (serviceType(svc) === 'LoadBalancer' && svc.spec?.allocateLoadBalancerNodePorts !== false);
}

function needsHealthCheckNodePort(svc: Service): boolean {
  return serviceType(svc) === 'LoadBalancer' && svc.spec?.externalTrafficPolicy === 'Local';
}

function loadBalancerClass(svc: Service): string | undefined {
  return (svc.spec as { loadBalancerClass?: string } | undefined)?.loadBalancerClass;
}

/** A LoadBalancer Service whose address podnet's pool provides. */
function ownsLoadBalancer(svc: Service): boolean {
  const cls = loadBalancerClass(svc);
  return serviceType(svc) === 'LoadBalancer' && (!cls || cls === LOAD_BALANCER_CLASS);
}

export function serviceName(svc: Service): string {
  return `${svc.metadata.namespace ?? 'default'}/${svc.metadata.name}`;
}

/** Who holds a value: the uid (a re-created Service of the same name is another holder). */
export function serviceKey(svc: Service): string {
  return svc.metadata.uid || serviceName(svc);
}

// ---------------------------------------------------------------------------------------
// Problems and conditions

export const CONDITION = {
  clusterIP: 'ClusterIPAllocated',
  nodePorts: 'NodePortsAllocated',
  loadBalancer: 'LoadBalancerIPAllocated',
} as const;

export type ProblemReason =
  | 'ClusterIPInvalid'
  | 'ClusterIPNotInRange'
  | 'ClusterIPAlreadyAllocated'
  | 'ClusterIPImmutable'
  | 'ClusterIPRangeFull'
  | 'NodePortInvalid'
  | 'NodePortNotInRange'
  | 'NodePortAlreadyAllocated'
  | 'NodePortNotAllowed'
  | 'NodePortRangeFull'
  | 'LoadBalancerIPInvalid'
  | 'LoadBalancerIPNotInPool'
  | 'LoadBalancerIPInUse'
  | 'LoadBalancerPoolExhausted'
  | 'InvalidType'
  | 'InvalidPort'
  | 'HeadlessNotAllowed'
  | 'ExternalNameInvalid';

/** One thing wrong with a Service, with a stable reason (also the condition's reason). */
export interface ServiceProblem {
  /** The field at fault, e.g. spec.clusterIP or spec.ports[1].nodePort. */
  field: string;
  reason: ProblemReason;
  message: string;
}

/**
 * Reasons for which the controller took a requested value out of the spec: it does not hand
 * out another one by itself (the user asked for that value), until the spec asks again.
 */
const REFUSALS: ReadonlySet<string> = new Set<ProblemReason>([
  'ClusterIPInvalid',
  'ClusterIPNotInRange',
  'ClusterIPAlreadyAllocated',
  'NodePortInvalid',
  'NodePortNotInRange',
  'NodePortAlreadyAllocated',
]);

function findCondition(svc: Service, type: string): Condition | undefined {
  return svc.status?.conditions?.find((c) => c.type === type);
}

function refused(svc: Service, type: string): boolean {
  const c = findCondition(svc, type);
  return c?.status === 'False' && REFUSALS.has(c.reason ?? '');
}

const AFTER_STORE = 'Delete the Service and apply it again';

// ---------------------------------------------------------------------------------------
// The planner

/** Who holds what: `clusterIP/10.96.1.1`, `nodePort/30086`, `loadBalancerIP/192.168.1.200` → serviceKey. */
export type Holdings = ReadonlyMap<string, string>;

export interface ServiceAllocation {
  /** The Service as given. */
  service: Service;
  /** The Service as it should be stored: spec with the allocated values, status with conditions and load-balancer ingress. */
  desired: Service;
  specChanged: boolean;
  statusChanged: boolean;
  /** What went wrong in this pass (each also in a False condition of desired.status). */
  problems: ServiceProblem[];
}

export interface AllocationPlan {
  /** One per Service, in the order given. */
  results: ServiceAllocation[];
  /** Feed back as `prior` in the next pass. */
  holdings: Holdings;
}

type Category = 'clusterIP' | 'nodePort' | 'loadBalancerIP';

interface Claim {
  cat: Category;
  value: bigint;
  field: string;
  work: Work;
  /** 0: held in the previous pass, 1: a load-balancer address already in the status, 2: a request. */
  tier: number;
  granted?: boolean;
  holder?: Work;
}

/** One Service in the planner: what it asks for, and what it gets. */
interface Work {
  svc: Service;
  key: string;
  name: string;
  clusterIP?: bigint;
  clusterProblem?: ServiceProblem;
  /** Per ServicePort index: the node port it ends up with. */
  nodePorts: Array<bigint | undefined>;
  healthCheck?: bigint;
  nodePortProblems: ServiceProblem[];
  lbIP?: bigint;
  lbProblem?: ServiceProblem;
  claims: Claim[];
}

const keyOf = (cat: Category, v: bigint, c: Compiled): string => `${cat}/${cat === 'nodePort' ? String(v) : formatIP({ family: cat === 'clusterIP' ? c.family : c.poolFamily, value: v })}`;

function byAge(a: Service, b: Service): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  return ta < tb ? -1 : ta > tb ? 1 : serviceName(a).localeCompare(serviceName(b));
}

function portNumber(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) ? v : undefined;
}

/** Reads what a Service asks for; values that can never be given become problems at once. */
function analyse(svc: Service, c: Compiled, prior: Holdings): Work {
  const w: Work = { svc, key: serviceKey(svc), name: serviceName(svc), nodePorts: [], nodePortProblems: [], claims: [] };
  const claim = (cat: Category, value: bigint, field: string, held = false): void => {
    const tier = prior.get(keyOf(cat, value, c)) === w.key ? 0 : held ? 1 : 2;
    w.claims.push({ cat, value, field, work: w, tier });
  };
  if (needsClusterIP(svc)) {
    const want = requestedClusterIP(svc);
    if (want) {
      const ip = tryIP(want);
      if (!ip) w.clusterProblem = problem('spec.clusterIP', 'ClusterIPInvalid', `spec.clusterIP "${want}" is not an IP address`);
      else if (!inCluster(c, ip)) w.clusterProblem = problem('spec.clusterIP', 'ClusterIPNotInRange', `spec.clusterIP ${want} is not a usable address of the service CIDR ${c.cluster.text}`);
      else claim('clusterIP', ip.value, 'spec.clusterIP');
    }
  }
  if (needsNodePorts(svc) && !isHeadless(svc)) {
    (svc.spec?.ports ?? []).forEach((p, i) => {
      if (p.nodePort === undefined || p.nodePort === 0) return;
      const n = portNumber(p.nodePort);
      const field = `spec.ports[${i}].nodePort`;
      if (n === undefined) w.nodePortProblems.push(problem(field, 'NodePortInvalid', `${field} ${JSON.stringify(p.nodePort)} is not a port number`));
      else if (!inSpan(c.ports, BigInt(n))) w.nodePortProblems.push(problem(field, 'NodePortNotInRange', `${field} ${n} is outside the node port range ${c.ports.text}`));
      else claim('nodePort', BigInt(n), field);
    });
    const hc = svc.spec?.healthCheckNodePort;
    if (needsHealthCheckNodePort(svc) && hc) {
      const n = portNumber(hc);
      const field = 'spec.healthCheckNodePort';
      if (n === undefined) w.nodePortProblems.push(problem(field, 'NodePortInvalid', `${field} ${JSON.stringify(hc)} is not a port number`));
      else if (!inSpan(c.ports, BigInt(n))) w.nodePortProblems.push(problem(field, 'NodePortNotInRange', `${field} ${n} is outside the node port range ${c.ports.text}`));
      else claim('nodePort', BigInt(n), field);
    }
  }
  if (ownsLoadBalancer(svc) && !isHeadless(svc)) {
    const held = (svc.status?.loadBalancer?.ingress ?? []).map((i) => tryIP(i.ip)).find((ip) => ip && inPool(c, ip));
    const want = svc.spec?.loadBalancerIP;
    if (want) {
      const ip = tryIP(want);
      if (!ip) w.lbProblem = problem('spec.loadBalancerIP', 'LoadBalancerIPInvalid', `spec.loadBalancerIP "${want}" is not an IP address`);
      else if (!inPool(c, ip)) w.lbProblem = problem('spec.loadBalancerIP', 'LoadBalancerIPNotInPool', `spec.loadBalancerIP ${want} is not in the LoadBalancer pool ${c.pool.text}`);
      else claim('loadBalancerIP', ip.value, 'spec.loadBalancerIP', held?.value === ip.value);
    } else if (held) {
      claim('loadBalancerIP', held.value, 'status.loadBalancer.ingress', true);
    }
  }
  return w;
}

function inCluster(c: Compiled, ip: IP): boolean {
  return contains(c.cidr, ip) && inSpan(c.cluster, ip.value);
}

function inPool(c: Compiled, ip: IP): boolean {
  return ip.family === c.poolFamily && inSpan(c.pool, ip.value);
}

function problem(field: string, reason: ProblemReason, message: string): ServiceProblem {
  return { field, reason, message };
}

/**
 * Allocates for every Service: honours what each asks for when it is free, hands out the rest,
 * and returns each Service as it should be stored. `prior` is the previous pass's `holdings`
 * (empty after a restart: the stored objects are enough); `now` stamps condition transitions.
 */
export function planAllocations(
  services: readonly Service[],
  config: ServiceNetworkConfig = DEFAULT_SERVICE_NETWORK,
  prior: Holdings = new Map(),
  now: string = new Date().toISOString(),
): AllocationPlan {
  const c = compile(config);
  const works = services.map((s) => analyse(s, c, prior));
  const held = new Map<string, Work>();

  // Requests first: earlier holders, then what a status shows, then the older Service wins.
  const claims = works.flatMap((w) => w.claims).sort((a, b) => a.tier - b.tier || byAge(a.work.svc, b.work.svc));
  for (const cl of claims) {
    const k = keyOf(cl.cat, cl.value, c);
    const h = held.get(k);
    if (h === undefined || h === cl.work) {
      held.set(k, cl.work);
      cl.granted = true;
    } else {
      cl.holder = h;
    }
  }
  const taken = (cat: Category) => (v: bigint) => held.has(keyOf(cat, v, c));

  for (const w of [...works].sort((a, b) => byAge(a.svc, b.svc))) {
    const svc = w.svc;
    const mine = (cat: Category, field: string): Claim | undefined => w.claims.find((x) => x.cat === cat && x.field === field);
    const take = (cat: Category, v: bigint): void => void held.set(keyOf(cat, v, c), w);

    // ClusterIP
    if (needsClusterIP(svc) && !w.clusterProblem) {
      const cl = mine('clusterIP', 'spec.clusterIP');
      if (cl?.granted) w.clusterIP = cl.value;
      else if (cl?.holder) {
        w.clusterProblem = problem('spec.clusterIP', 'ClusterIPAlreadyAllocated', `spec.clusterIP ${formatIP({ family: c.family, value: cl.value })} is already allocated to Service ${cl.holder.name}`);
      } else if (!refused(svc, CONDITION.clusterIP)) {
        const v = nextFree(c.cluster, (x) => c.reserved.has(x) || taken('clusterIP')(x));
        if (v === undefined) w.clusterProblem = problem('spec.clusterIP', 'ClusterIPRangeFull', `no free address is left in the service CIDR ${c.cluster.text}`);
        else {
          w.clusterIP = v;
          take('clusterIP', v);
        }
      }
    }

    // Node ports: one per distinct ServicePort.port (TCP and UDP of port 53 share one), as Kubernetes does.
    if (needsNodePorts(svc) && !isHeadless(svc)) {
      const ports = svc.spec?.ports ?? [];
      const byServicePort = new Map<number, bigint>();
      ports.forEach((p, i) => {
        const cl = mine('nodePort', `spec.ports[${i}].nodePort`);
        if (cl?.granted) {
          w.nodePorts[i] = cl.value;
          if (!byServicePort.has(p.port)) byServicePort.set(p.port, cl.value);
        } else if (cl?.holder) {
          w.nodePortProblems.push(problem(cl.field, 'NodePortAlreadyAllocated', `${cl.field} ${cl.value} is already allocated to Service ${cl.holder.name}`));
        }
      });
      const blocked = w.nodePortProblems.length > 0 || refused(svc, CONDITION.nodePorts);
      const hasRequest = (i: number): boolean => !!ports[i]?.nodePort;
      if (allocatesNodePorts(svc) && !blocked) {
        for (let i = 0; i < ports.length; i++) {
          const p = ports[i] as ServicePort;
          if (w.nodePorts[i] !== undefined || hasRequest(i)) continue;
          let v = byServicePort.get(p.port);
          if (v === undefined) {
            v = nextFree(c.ports, taken('nodePort'));
            if (v === undefined) {
              w.nodePortProblems.push(problem(`spec.ports[${i}].nodePort`, 'NodePortRangeFull', `no free node port is left in ${c.ports.text}`));
              break;
            }
            take('nodePort', v);
            byServicePort.set(p.port, v);
          }
          w.nodePorts[i] = v;
        }
      }
      if (needsHealthCheckNodePort(svc)) {
        const cl = mine('nodePort', 'spec.healthCheckNodePort');
        if (cl?.granted) w.healthCheck = cl.value;
        else if (cl?.holder) w.nodePortProblems.push(problem(cl.field, 'NodePortAlreadyAllocated', `${cl.field} ${cl.value} is already allocated to Service ${cl.holder.name}`));
        else if (!cl && !blocked) {
          const v = nextFree(c.ports, taken('nodePort'));
          if (v === undefined) w.nodePortProblems.push(problem('spec.healthCheckNodePort', 'NodePortRangeFull', `no free node port is left in ${c.ports.text}`));
          else {
            w.healthCheck = v;
            take('nodePort', v);
          }
        }
      }
    }

    // LoadBalancer address
    if (ownsLoadBalancer(svc) && !isHeadless(svc) && !w.lbProblem) {
      const cl = w.claims.find((x) => x.cat === 'loadBalancerIP');
      const fmt = (v: bigint): string => formatIP({ family: c.poolFamily, value: v });
      if (cl?.granted) w.lbIP = cl.value;
      else if (cl?.holder) {
        w.lbProblem = problem('spec.loadBalancerIP', 'LoadBalancerIPInUse', `spec.loadBalancerIP ${fmt(cl.value)} is in use by Service ${cl.holder.name}`);
      } else {
        const v = nextFree(c.pool, taken('loadBalancerIP'));
        if (v === undefined) w.lbProblem = problem('status.loadBalancer', 'LoadBalancerPoolExhausted', `every address of the LoadBalancer pool ${c.pool.text} is in use`);
        else {
          w.lbIP = v;
          take('loadBalancerIP', v);
        }
      }
    }
  }

  const holdings = new Map<string, string>();
  for (const [k, w] of held) holdings.set(k, w.key);
  return { results: works.map((w) => result(w, c, now)), holdings };
}

/** Advice after a value was refused in a stored Service. */
function advice(p: ServiceProblem, c: Compiled): string {
  switch (p.reason) {
    case 'ClusterIPInvalid':
    case 'ClusterIPNotInRange':
    case 'ClusterIPAlreadyAllocated':
      return `${AFTER_STORE} with another free address of ${c.cluster.text}, or without spec.clusterIP to have one allocated.`;
    case 'ClusterIPRangeFull':
      return 'The Service gets an address as soon as another Service frees one: delete Services you do not need, or configure a larger service CIDR.';
    case 'NodePortInvalid':
    case 'NodePortNotInRange':
    case 'NodePortAlreadyAllocated':
      return `${AFTER_STORE} with another free node port of ${c.ports.text}, or without nodePort to have one allocated.`;
    case 'NodePortRangeFull':
      return 'The Service gets node ports as soon as others are freed: delete NodePort or LoadBalancer Services you do not need.';
    case 'LoadBalancerIPInvalid':
    case 'LoadBalancerIPNotInPool':
      return `Set spec.loadBalancerIP to an address of ${c.pool.text}, or leave it out to have one assigned.`;
    case 'LoadBalancerIPInUse':
      return `The address is assigned once that Service frees it; or set spec.loadBalancerIP to another address of ${c.pool.text}, or leave it out.`;
    case 'LoadBalancerPoolExhausted':
      return 'The Service gets an address as soon as another LoadBalancer Service frees one (is deleted or changes type).';
    case 'HeadlessNotAllowed':
      return 'A headless Service (clusterIP: None) can only be of type ClusterIP.';
    default:
      return '';
  }
}

function conditionFor(type: string, problems: ServiceProblem[], okMessage: string, c: Compiled): Omit<Condition, 'lastTransitionTime'> {
  const first = problems[0];
  if (!first) return { type, status: 'True', reason: 'Allocated', message: okMessage };
  const facts = problems.map((p) => p.message).join('; ');
  return { type, status: 'False', reason: first.reason, message: `${facts}. ${advice(first, c)}`.trim() };
}

function setCondition(list: Condition[], cond: Omit<Condition, 'lastTransitionTime'>, now: string): Condition[] {
  const old = list.find((x) => x.type === cond.type);
  const next: Condition = { ...cond, lastTransitionTime: old && old.status === cond.status ? (old.lastTransitionTime ?? now) : now };
  if (old && isDeepStrictEqual(old, next)) return list;
  return old ? list.map((x) => (x === old ? next : x)) : [...list, next];
}

/** The Service as it should be stored after this pass. */
function result(w: Work, c: Compiled, now: string): ServiceAllocation {
  const svc = w.svc;
  const spec: ServiceSpec = structuredClone(svc.spec ?? {});
  const status = structuredClone(svc.status ?? {});
  let conditions = [...(status.conditions ?? [])];
  const drop = (type: string): void => void (conditions = conditions.filter((x) => x.type !== type));
  const problems: ServiceProblem[] = [];
  const ip = (v: bigint): string => formatIP({ family: c.family, value: v });

  // ClusterIP: set, "None" for headless, or absent.
  if (isHeadless(svc)) {
    spec.clusterIP = 'None';
    spec.clusterIPs = ['None'];
    drop(CONDITION.clusterIP);
  } else if (!needsClusterIP(svc)) {
    delete spec.clusterIP;
    delete spec.clusterIPs;
    drop(CONDITION.clusterIP);
  } else if (w.clusterIP !== undefined) {
    spec.clusterIP = ip(w.clusterIP);
    spec.clusterIPs = [spec.clusterIP];
    conditions = setCondition(conditions, conditionFor(CONDITION.clusterIP, [], `${spec.clusterIP} is allocated to this Service`, c), now);
  } else {
    delete spec.clusterIP;
    delete spec.clusterIPs;
    if (w.clusterProblem) {
      problems.push(w.clusterProblem);
      conditions = setCondition(conditions, conditionFor(CONDITION.clusterIP, [w.clusterProblem], '', c), now);
    }
    // else: refused earlier and not asked again; the old condition stays as it is.
  }

  // Node ports: only for NodePort and LoadBalancer Services with a cluster IP.
  const ports = spec.ports ?? [];
  if (needsNodePorts(svc) && isHeadless(svc)) {
    ports.forEach((p) => delete p.nodePort);
    delete spec.healthCheckNodePort;
    const p = problem('spec.type', 'HeadlessNotAllowed', `a headless Service (clusterIP: None) gets no node ports, so type ${serviceType(svc)} does not work`);
    problems.push(p);
    conditions = setCondition(conditions, conditionFor(CONDITION.nodePorts, [p], '', c), now);
  } else if (needsNodePorts(svc)) {
    ports.forEach((p, i) => {
      const v = w.nodePorts[i];
      if (v !== undefined) p.nodePort = Number(v);
      else delete p.nodePort;
    });
    if (w.healthCheck !== undefined) spec.healthCheckNodePort = Number(w.healthCheck);
    else delete spec.healthCheckNodePort;
    const missing = ports.some((p) => p.nodePort === undefined) && allocatesNodePorts(svc);
    if (w.nodePortProblems.length > 0) {
      problems.push(...w.nodePortProblems);
      conditions = setCondition(conditions, conditionFor(CONDITION.nodePorts, w.nodePortProblems, '', c), now);
    } else if (!(missing && refused(svc, CONDITION.nodePorts))) {
      const list = [...new Set(ports.map((p) => p.nodePort).filter((n) => n !== undefined))];
      if (spec.healthCheckNodePort !== undefined) list.push(spec.healthCheckNodePort);
      const ok = list.length ? `node port${list.length > 1 ? 's' : ''} ${list.join(', ')} ${list.length > 1 ? 'are' : 'is'} allocated to this Service` : 'no node ports are needed (allocateLoadBalancerNodePorts: false)';
      conditions = setCondition(conditions, conditionFor(CONDITION.nodePorts, [], ok, c), now);
    }
  } else {
    ports.forEach((p) => delete p.nodePort);
    delete spec.healthCheckNodePort;
    drop(CONDITION.nodePorts);
  }

  // LoadBalancer address: in the status, where Kubernetes' load balancers put it.
  if (ownsLoadBalancer(svc) && !isHeadless(svc)) {
    const fmt = (v: bigint): string => formatIP({ family: c.poolFamily, value: v });
    status.loadBalancer = w.lbIP !== undefined ? { ingress: [{ ip: fmt(w.lbIP) }] } : {};
    if (w.lbProblem) problems.push(w.lbProblem);
    const okMsg = w.lbIP !== undefined ? `${fmt(w.lbIP)} is assigned from the pool ${c.pool.text}` : '';
    conditions = setCondition(conditions, conditionFor(CONDITION.loadBalancer, w.lbProblem ? [w.lbProblem] : [], okMsg, c), now);
  } else if (serviceType(svc) !== 'LoadBalancer' || isHeadless(svc)) {
    if (status.loadBalancer?.ingress?.length) status.loadBalancer = {};
    drop(CONDITION.loadBalancer);
  }

  if (conditions.length) status.conditions = conditions;
  else delete status.conditions;
  const desired: Service = { ...svc, spec, status };
  if (Object.keys(status).length === 0 && svc.status === undefined) delete desired.status;
  return {
    service: svc,
    desired,
    specChanged: !isDeepStrictEqual(spec, svc.spec ?? {}),
    statusChanged: !isDeepStrictEqual(desired.status ?? {}, svc.status ?? {}),
    problems,
  };
}

// ---------------------------------------------------------------------------------------
// Before storing: what `lab apply` asks

const TYPES = new Set(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']);
const PROTOCOLS = new Set<Protocol>(['TCP', 'UDP', 'SCTP']);
const IANA_SVC_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * What the API server's validation and allocators would refuse, checked before a Service is
 * stored, against the Services already stored (`existing` may include the Service itself:
 * then this is an update). An empty list means the Service may be stored.
 */
export function validateService(svc: Service, existing: readonly Service[], config: ServiceNetworkConfig = DEFAULT_SERVICE_NETWORK): ServiceProblem[] {
  const c = compile(config);
  const out: ServiceProblem[] = [];
  const add = (field: string, reason: ProblemReason, message: string): void => void out.push({ field, reason, message });
  const me = serviceName(svc);
  const current = existing.find((s) => serviceName(s) === me);
  const others = existing.filter((s) => serviceName(s) !== me);
  const spec = svc.spec ?? {};
  const type = spec.type ?? 'ClusterIP';

  if (!TYPES.has(type)) add('spec.type', 'InvalidType', `spec.type "${type}" must be ClusterIP, NodePort, LoadBalancer or ExternalName`);
  if (type === 'ExternalName') {
    if (!spec.externalName) add('spec.externalName', 'ExternalNameInvalid', 'spec.externalName is required for type ExternalName (a DNS name such as db.example.com)');
    if (spec.clusterIP) add('spec.clusterIP', 'ClusterIPInvalid', 'spec.clusterIP must be left out for type ExternalName');
  }
  if (isHeadless(svc) && (type === 'NodePort' || type === 'LoadBalancer')) {
    add('spec.type', 'HeadlessNotAllowed', `a headless Service (clusterIP: None) must be of type ClusterIP, not ${type}`);
  }

  // Ports
  const seen = new Map<string, number>();
  const names = new Set<string>();
  const ports = spec.ports ?? [];
  ports.forEach((p, i) => {
    const f = `spec.ports[${i}]`;
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) add(`${f}.port`, 'InvalidPort', `${f}.port ${JSON.stringify(p.port)} must be a port number from 1 to 65535`);
    const proto = p.protocol ?? 'TCP';
    if (!PROTOCOLS.has(proto)) add(`${f}.protocol`, 'InvalidPort', `${f}.protocol "${proto}" must be TCP, UDP or SCTP`);
    const tp = p.targetPort;
    if (tp !== undefined) {
      const okNumber = typeof tp === 'number' && Number.isInteger(tp) && tp >= 1 && tp <= 65535;
      const okName = typeof tp === 'string' && (IANA_SVC_NAME.test(tp) || /^[1-9][0-9]{0,4}$/.test(tp));
      if (!okNumber && !okName) add(`${f}.targetPort`, 'InvalidPort', `${f}.targetPort ${JSON.stringify(tp)} must be a port number or the name of a container port (up to 15 lowercase letters, digits and '-')`);
    }
    if (ports.length > 1 && !p.name) add(`${f}.name`, 'InvalidPort', `${f}.name is required when a Service has more than one port`);
    if (p.name !== undefined && !DNS_LABEL.test(p.name)) add(`${f}.name`, 'InvalidPort', `${f}.name "${p.name}" must be lowercase letters, digits and '-'`);
    if (p.name && names.has(p.name)) add(`${f}.name`, 'InvalidPort', `${f}.name "${p.name}" is used twice`);
    if (p.name) names.add(p.name);
    const k = `${p.port}/${proto}`;
    if (seen.has(k)) add(`${f}.port`, 'InvalidPort', `${f} repeats port ${k} of spec.ports[${seen.get(k)}]`);
    else seen.set(k, i);
  });

  // ClusterIP
  const want = requestedClusterIP(svc);
  if (spec.clusterIP && spec.clusterIPs?.[0] && spec.clusterIPs[0] !== spec.clusterIP) {
    add('spec.clusterIPs', 'ClusterIPInvalid', `spec.clusterIPs[0] ${spec.clusterIPs[0]} must equal spec.clusterIP ${spec.clusterIP}`);
  }
  const had = current && needsClusterIP(current) ? requestedClusterIP(current) : current && isHeadless(current) ? 'None' : '';
  if (current && had && want && want !== had && type !== 'ExternalName' && serviceType(current) !== 'ExternalName') {
    add('spec.clusterIP', 'ClusterIPImmutable', `spec.clusterIP cannot change from ${had} to ${want}: delete the Service and create it again`);
  } else if (type !== 'ExternalName' && want && want !== 'None') {
    const ip = tryIP(want);
    if (!ip) add('spec.clusterIP', 'ClusterIPInvalid', `spec.clusterIP "${want}" is not an IP address (or "None" for a headless Service)`);
    else if (!inCluster(c, ip)) add('spec.clusterIP', 'ClusterIPNotInRange', `spec.clusterIP ${want} is not a usable address of the service CIDR ${c.cluster.text}: choose one inside it, or leave spec.clusterIP out to have one allocated`);
    else {
      const holder = others.find((s) => needsClusterIP(s) && tryIP(requestedClusterIP(s))?.value === ip.value && tryIP(requestedClusterIP(s))?.family === ip.family);
      if (holder) add('spec.clusterIP', 'ClusterIPAlreadyAllocated', `spec.clusterIP ${want} is already allocated to Service ${serviceName(holder)}: choose another free address of ${c.cluster.text}, or leave spec.clusterIP out to have one allocated`);
    }
  }

  // Node ports
  const nodePortHolders = new Map<number, string>();
  for (const s of others) {
    if (!needsNodePorts(s)) continue;
    for (const p of s.spec?.ports ?? []) if (p.nodePort) nodePortHolders.set(p.nodePort, serviceName(s));
    if (needsHealthCheckNodePort(s) && s.spec?.healthCheckNodePort) nodePortHolders.set(s.spec.healthCheckNodePort, serviceName(s));
  }
  const checkNodePort = (field: string, n: unknown): void => {
    if (!Number.isInteger(n)) return add(field, 'NodePortInvalid', `${field} ${JSON.stringify(n)} is not a port number`);
    const v = n as number;
    if (!inSpan(c.ports, BigInt(v))) return add(field, 'NodePortNotInRange', `${field} ${v} is outside the node port range ${c.ports.text}: choose one inside it, or leave it out to have one allocated`);
    const h = nodePortHolders.get(v);
    if (h) add(field, 'NodePortAlreadyAllocated', `${field} ${v} is already allocated to Service ${h}: choose another free node port of ${c.ports.text}, or leave it out to have one allocated`);
  };
  const own = new Map<string, number>();
  ports.forEach((p, i) => {
    if (!p.nodePort) return;
    const f = `spec.ports[${i}].nodePort`;
    if (type !== 'NodePort' && type !== 'LoadBalancer') return add(f, 'NodePortNotAllowed', `${f} may only be set for type NodePort or LoadBalancer, not ${type}`);
    checkNodePort(f, p.nodePort);
    const k = `${p.nodePort}/${p.protocol ?? 'TCP'}`;
    if (own.has(k)) add(f, 'NodePortAlreadyAllocated', `${f} ${p.nodePort} is also the node port of spec.ports[${own.get(k)}] with the same protocol`);
    else own.set(k, i);
  });
  if (spec.healthCheckNodePort) {
    if (!needsHealthCheckNodePort(svc)) add('spec.healthCheckNodePort', 'NodePortNotAllowed', 'spec.healthCheckNodePort may only be set for type LoadBalancer with externalTrafficPolicy: Local');
    else {
      checkNodePort('spec.healthCheckNodePort', spec.healthCheckNodePort);
      if (ports.some((p) => p.nodePort === spec.healthCheckNodePort)) add('spec.healthCheckNodePort', 'NodePortAlreadyAllocated', `spec.healthCheckNodePort ${spec.healthCheckNodePort} is also a node port of spec.ports`);
    }
  }

  // LoadBalancer address
  if (spec.loadBalancerIP) {
    const ip = tryIP(spec.loadBalancerIP);
    if (type !== 'LoadBalancer') add('spec.loadBalancerIP', 'LoadBalancerIPInvalid', `spec.loadBalancerIP may only be set for type LoadBalancer, not ${type}`);
    else if (!ip) add('spec.loadBalancerIP', 'LoadBalancerIPInvalid', `spec.loadBalancerIP "${spec.loadBalancerIP}" is not an IP address`);
    else if (ownsLoadBalancer(svc) && !inPool(c, ip)) add('spec.loadBalancerIP', 'LoadBalancerIPNotInPool', `spec.loadBalancerIP ${spec.loadBalancerIP} is not in the LoadBalancer pool ${c.pool.text}`);
    else if (ownsLoadBalancer(svc)) {
      const h = others.find((s) => ownsLoadBalancer(s) && (s.status?.loadBalancer?.ingress ?? []).some((x) => tryIP(x.ip)?.value === ip.value));
      if (h) add('spec.loadBalancerIP', 'LoadBalancerIPInUse', `spec.loadBalancerIP ${spec.loadBalancerIP} is in use by Service ${serviceName(h)}: choose another address of ${c.pool.text}, or leave it out`);
    }
  }
  return out;
}

/**
 * On an update that leaves allocated values out (a re-applied manifest without clusterIP or
 * nodePort), keeps the stored ones, as kube-apiserver does (patchAllocatedValues): node ports
 * are matched by port name, and only while the Service still needs them.
 */
export function keepAllocatedValues(before: Service, after: Service): Service {
  const out = structuredClone(after);
  const b = before.spec ?? {};
  const a = (out.spec ??= {});
  if (needsClusterIP(before) && needsClusterIP(out)) {
    if (!a.clusterIP && b.clusterIP) a.clusterIP = b.clusterIP;
    if (!a.clusterIPs?.length && b.clusterIPs?.length) a.clusterIPs = [...b.clusterIPs];
  }
  if (needsNodePorts(before) && needsNodePorts(out)) {
    const inNew = new Set((a.ports ?? []).map((p) => p.nodePort).filter(Boolean));
    const used = new Set((b.ports ?? []).map((p) => p.nodePort).filter((n) => n && inNew.has(n)));
    const byName = new Map((b.ports ?? []).map((p) => [p.name ?? '', p.nodePort]));
    for (const p of a.ports ?? []) {
      const old = byName.get(p.name ?? '');
      if (!p.nodePort && old && !used.has(old)) p.nodePort = old;
    }
  }
  if (needsHealthCheckNodePort(before) && needsHealthCheckNodePort(out) && !a.healthCheckNodePort && b.healthCheckNodePort) {
    a.healthCheckNodePort = b.healthCheckNodePort;
  }
  return out;
}
