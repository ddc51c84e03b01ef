/**
 * The objects podnet keeps in its datastore, in their Kubernetes shapes, and the one
 * interface every backend (etcd now, the Kubernetes API later, memory for tests) offers.
 *
 * The shapes are those of the Kubernetes API (core/v1, discovery.k8s.io/v1,
 * networking.k8s.io/v1), trimmed to the fields podnet reads or writes. Objects are stored
 * whole, so fields not listed here survive a round trip; `lab apply` can hand over what a
 * user's YAML holds. Every field is optional where Kubernetes makes it optional.
 */

// ---------------------------------------------------------------------------------------
// Metadata and shared pieces

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  /** Required, except on create with `generateName`. */
  name: string;
  generateName?: string;
  /** Set on namespaced kinds, absent on cluster-scoped ones (Node, Namespace). */
  namespace?: string;
  /** Set by the datastore on create; never changes. */
  uid?: string;
  /**
   * Set by the datastore on every write: an opaque version (in etcd the key's mod
   * revision). `update` succeeds only if it still matches (optimistic concurrency).
   */
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Set by the datastore on create (RFC 3339, seconds). */
  creationTimestamp?: string;
  /** Set when a graceful deletion has begun (pods being terminated). */
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  ownerReferences?: OwnerReference[];
  finalizers?: string[];
}

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

/** metav1.LabelSelector: all of matchLabels and matchExpressions must hold. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  lastHeartbeatTime?: string;
  lastProbeTime?: string;
}

export interface ObjectReference {
  kind?: string;
  namespace?: string;
  name?: string;
  uid?: string;
  apiVersion?: string;
  resourceVersion?: string;
}

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

/** Every object in the datastore: a Kubernetes object with metadata, spec and status. */
export interface KubeObject<K extends string = string, Spec = unknown, Status = unknown> {
  apiVersion: string;
  kind: K;
  metadata: ObjectMeta;
  spec?: Spec;
  status?: Status;
}

// ---------------------------------------------------------------------------------------
// Node (v1, cluster-scoped)

export interface Taint {
  key: string;
  value?: string;
  effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
  timeAdded?: string;
}

export interface NodeSpec {
  podCIDR?: string;
  podCIDRs?: string[];
  providerID?: string;
  unschedulable?: boolean;
  taints?: Taint[];
}

export interface NodeAddress {
  type: 'InternalIP' | 'ExternalIP' | 'Hostname' | 'InternalDNS' | 'ExternalDNS';
  address: string;
}

export interface NodeStatus {
  addresses?: NodeAddress[];
  conditions?: Condition[];
  capacity?: Record<string, string>;
  allocatable?: Record<string, string>;
  nodeInfo?: Record<string, string>;
}

export type Node = KubeObject<'Node', NodeSpec, NodeStatus>;

// ---------------------------------------------------------------------------------------
// Pod (v1, namespaced)

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: Protocol;
  hostPort?: number;
  hostIP?: string;
}

export interface Probe {
  exec?: { command: string[] };
  tcpSocket?: { port: number | string; host?: string };
  httpGet?: { path?: string; port: number | string; host?: string; scheme?: 'HTTP' | 'HTTPS'; httpHeaders?: Array<{ name: string; value: string }> };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}

export interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  workingDir?: string;
  env?: EnvVar[];
  ports?: ContainerPort[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
}

export interface PodDNSConfig {
  nameservers?: string[];
  searches?: string[];
  options?: Array<{ name: string; value?: string }>;
}

export interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  nodeName?: string;
  nodeSelector?: Record<string, string>;
  hostNetwork?: boolean;
  hostname?: string;
  subdomain?: string;
  dnsPolicy?: 'ClusterFirst' | 'ClusterFirstWithHostNet' | 'Default' | 'None';
  dnsConfig?: PodDNSConfig;
  restartPolicy?: 'Always' | 'OnFailure' | 'Never';
  serviceAccountName?: string;
  terminationGracePeriodSeconds?: number;
  readinessGates?: Array<{ conditionType: string }>;
  enableServiceLinks?: boolean;
}

export interface ContainerStatus {
  name: string;
  ready: boolean;
  restartCount: number;
  started?: boolean;
  state?: Record<string, unknown>;
  image?: string;
  containerID?: string;
}

export interface PodStatus {
  phase?: 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown';
  conditions?: Condition[];
  message?: string;
  reason?: string;
  hostIP?: string;
  hostIPs?: Array<{ ip: string }>;
  podIP?: string;
  podIPs?: Array<{ ip: string }>;
  startTime?: string;
  containerStatuses?: ContainerStatus[];
}

export type Pod = KubeObject<'Pod', PodSpec, PodStatus>;

// ---------------------------------------------------------------------------------------
// Namespace (v1, cluster-scoped)

export interface NamespaceSpec {
  finalizers?: string[];
}

export interface NamespaceStatus {
  phase?: 'Active' | 'Terminating';
}

export type Namespace = KubeObject<'Namespace', NamespaceSpec, NamespaceStatus>;

// ---------------------------------------------------------------------------------------
// Service (v1, namespaced)

export interface ServicePort {
  name?: string;
  protocol?: Protocol;
  port: number;
  targetPort?: number | string;
  nodePort?: number;
  appProtocol?: string;
}

export interface ServiceSpec {
  type?: 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
  selector?: Record<string, string>;
  ports?: ServicePort[];
  /** "None" for a headless service. */
  clusterIP?: string;
  clusterIPs?: string[];
  ipFamilies?: Array<'IPv4' | 'IPv6'>;
  ipFamilyPolicy?: 'SingleStack' | 'PreferDualStack' | 'RequireDualStack';
  externalName?: string;
  externalIPs?: string[];
  loadBalancerIP?: string;
  loadBalancerSourceRanges?: string[];
  sessionAffinity?: 'None' | 'ClientIP';
  sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
  externalTrafficPolicy?: 'Cluster' | 'Local';
  internalTrafficPolicy?: 'Cluster' | 'Local';
  healthCheckNodePort?: number;
  publishNotReadyAddresses?: boolean;
  allocateLoadBalancerNodePorts?: boolean;
}

export interface LoadBalancerIngress {
  ip?: string;
  hostname?: string;
}

export interface ServiceStatus {
  loadBalancer?: { ingress?: LoadBalancerIngress[] };
  conditions?: Condition[];
}

export type Service = KubeObject<'Service', ServiceSpec, ServiceStatus>;

// ---------------------------------------------------------------------------------------
// EndpointSlice (discovery.k8s.io/v1, namespaced). Like Kubernetes, it has no spec and no
// status: its data sits at the top level.

export interface EndpointConditions {
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

export interface Endpoint {
  addresses: string[];
  conditions?: EndpointConditions;
  hostname?: string;
  targetRef?: ObjectReference;
  nodeName?: string;
  zone?: string;
}

export interface EndpointPort {
  name?: string;
  protocol?: Protocol;
  port?: number;
  appProtocol?: string;
}

export interface EndpointSlice extends KubeObject<'EndpointSlice', never, never> {
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints: Endpoint[];
  ports?: EndpointPort[];
}

// ---------------------------------------------------------------------------------------
// NetworkPolicy (networking.k8s.io/v1, namespaced; no status)

export interface IPBlock {
  cidr: string;
  except?: string[];
}

export interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: IPBlock;
}

export interface NetworkPolicyPort {
  protocol?: Protocol;
  port?: number | string;
  endPort?: number;
}

export interface NetworkPolicyIngressRule {
  from?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}

export interface NetworkPolicyEgressRule {
  to?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}

export interface NetworkPolicySpec {
  podSelector: LabelSelector;
  policyTypes?: Array<'Ingress' | 'Egress'>;
  ingress?: NetworkPolicyIngressRule[];
  egress?: NetworkPolicyEgressRule[];
}

export type NetworkPolicy = KubeObject<'NetworkPolicy', NetworkPolicySpec, never>;

// ---------------------------------------------------------------------------------------
// Kinds

// ---------------------------------------------------------------------------------------
// Deployment (apps/v1, namespaced): the controller turns it into Pods.

export interface DeploymentSpec {
  replicas?: number;
  selector: LabelSelector;
  template: { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
}

export interface DeploymentStatus {
  replicas?: number;
  readyReplicas?: number;
  availableReplicas?: number;
  observedGeneration?: number;
}

export type Deployment = KubeObject<'Deployment', DeploymentSpec, DeploymentStatus>;

export interface KindMap {
  Deployment: Deployment;
  Node: Node;
  Pod: Pod;
  Namespace: Namespace;
  Service: Service;
  EndpointSlice: EndpointSlice;
  NetworkPolicy: NetworkPolicy;
}

export type Kind = keyof KindMap;
export type ObjectOf<K extends Kind> = KindMap[K];
export type AnyObject = KindMap[Kind];

// ---------------------------------------------------------------------------------------
// The datastore interface

/** Names one object; `namespace` is ignored for cluster-scoped kinds. */
export interface ObjectRef {
  namespace?: string;
  name: string;
}

/**
 * A label selector: the Kubernetes text form (`app=web,tier!=db,env in (a,b),!legacy`) or a
 * metav1.LabelSelector object.
 */
export type Selector = string | LabelSelector;

export interface ListOptions {
  /** Only this namespace; all namespaces when absent. Ignored for cluster-scoped kinds. */
  namespace?: string;
  labelSelector?: Selector;
}

export interface ObjectList<T> {
  items: T[];
  /** The datastore revision the list was read at: start a watch from here. */
  revision: string;
}

export interface DeleteOptions {
  /** Precondition: delete only if the object is still at this version (else CONFLICT). */
  resourceVersion?: string;
  /** Precondition: delete only if the object still has this uid (else CONFLICT). */
  uid?: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface WatchEvent<T> {
  type: WatchEventType;
  /** The object after the change; for DELETED, its last state (resourceVersion = deletion). */
  object: T;
  /**
   * Where to resume: once this event is handled, every change up to this revision has been
   * delivered. Usually the change's own revision; events that come as a batch (the initial
   * ADDED list, a resync, the changes of one transaction) carry the revision before the
   * batch on all but their last event, so a consumer never resumes from half a batch.
   */
  revision: string;
  /**
   * True when the event was made up by comparing two lists (after the watch fell behind a
   * compaction) rather than read from the change history: intermediate states are lost,
   * the end state is right.
   */
  synthetic?: boolean;
}

export type WatchState = 'connected' | 'disconnected' | 'resynced';

export interface WatchStatus {
  state: WatchState;
  /** The last revision delivered. */
  revision: string;
  error?: Error;
}

export interface WatchOptions {
  namespace?: string;
  labelSelector?: Selector;
  /**
   * Deliver the changes made after this revision (from `list().revision` or an event's
   * `revision`; "0" means the whole history). Without it the watch first delivers an ADDED
   * event for every object that exists now, then the changes.
   */
  fromRevision?: string;
  /** Stops the watch (as `stop()`). */
  signal?: AbortSignal;
  /** Told when the watch loses or regains its datastore, or resynchronises from a list. */
  onStatus?: (status: WatchStatus) => void;
}

/**
 * A stream of changes. It survives disconnects: it resumes from the last revision it
 * delivered, so no event is lost or repeated; if that revision has been compacted away it
 * lists again and emits the difference (events marked `synthetic`). The iteration ends when
 * the watch is stopped, and throws only if the watch cannot go on (PODNET_DATASTORE_EXPIRED:
 * `fromRevision` was compacted before the watch began; restart from a fresh list).
 */
export interface Watch<T> extends AsyncIterable<WatchEvent<T>> {
  /** The last revision delivered (or the start revision). */
  readonly revision: string;
  stop(): Promise<void>;
}

/**
 * Cluster state: one interface for every backend. Writes follow the Kubernetes API's rules:
 * create fails with ALREADY_EXISTS; update and updateStatus need the object's current
 * `metadata.resourceVersion` (CONFLICT if somebody wrote in between; an empty
 * resourceVersion means "whatever is there"); `update` keeps the stored status and
 * `updateStatus` changes only the status (for kinds that have one: Node, Pod, Namespace,
 * Service; for EndpointSlice and NetworkPolicy `update` writes the whole object).
 * Reads return copies: changing them changes nothing stored.
 */
export interface Datastore {
  /** 'etcd', 'kubernetes' or 'memory'. */
  readonly backend: string;
  /** Where the data lives, for messages (an etcd endpoint, an API server URL). */
  readonly endpoint: string;

  /** Throws NOT_FOUND. */
  get<K extends Kind>(kind: K, ref: ObjectRef): Promise<ObjectOf<K>>;
  list<K extends Kind>(kind: K, opts?: ListOptions): Promise<ObjectList<ObjectOf<K>>>;
  /** Sets uid, creationTimestamp and resourceVersion; throws ALREADY_EXISTS. */
  create<T extends AnyObject>(obj: T): Promise<T>;
  /** Throws NOT_FOUND or CONFLICT. */
  update<T extends AnyObject>(obj: T): Promise<T>;
  /** Writes `obj.status` only; throws NOT_FOUND or CONFLICT (INVALID for kinds without status). */
  updateStatus<T extends AnyObject>(obj: T): Promise<T>;
  /** Removes the object and returns its last state; throws NOT_FOUND (or CONFLICT on a failed precondition). */
  delete<K extends Kind>(kind: K, ref: ObjectRef, opts?: DeleteOptions): Promise<ObjectOf<K>>;
  watch<K extends Kind>(kind: K, opts?: WatchOptions): Watch<ObjectOf<K>>;
  /** Stops every watch and frees the connection. */
  close(): Promise<void>;
}
