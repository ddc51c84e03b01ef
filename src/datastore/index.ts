/**
 * podnet's cluster state: one Datastore interface (types.ts) with an etcd v3 backend
 * (etcd.ts), an in-memory one for tests (memory.ts), and, later, the Kubernetes API;
 * informers over any of them (informer.ts). See docs/datastore.md.
 */
export type {
  AnyObject,
  Condition,
  Container,
  ContainerPort,
  Datastore,
  Deployment,
  DeploymentSpec,
  DeploymentStatus,
  DeleteOptions,
  Endpoint,
  EndpointConditions,
  EndpointPort,
  EndpointSlice,
  EnvVar,
  IPBlock,
  Kind,
  KindMap,
  KubeObject,
  LabelSelector,
  LabelSelectorRequirement,
  ListOptions,
  LoadBalancerIngress,
  Namespace,
  NetworkPolicy,
  NetworkPolicyEgressRule,
  NetworkPolicyIngressRule,
  NetworkPolicyPeer,
  NetworkPolicyPort,
  NetworkPolicySpec,
  Node,
  NodeAddress,
  NodeSpec,
  NodeStatus,
  ObjectList,
  ObjectMeta,
  ObjectOf,
  ObjectRef,
  ObjectReference,
  OwnerReference,
  Pod,
  PodSpec,
  PodStatus,
  Probe,
  Protocol,
  Selector,
  Service,
  ServicePort,
  ServiceSpec,
  ServiceStatus,
  Taint,
  Watch,
  WatchEvent,
  WatchEventType,
  WatchOptions,
  WatchState,
  WatchStatus,
} from './types.ts';
export { DatastoreCode, DatastoreError, isAlreadyExists, isConflict, isExpired, isNotFound, isUnavailable } from './errors.ts';
export { KINDS, DEFAULT_PREFIX, cacheKey, kindInfo, objectKey, rangePrefix } from './kinds.ts';
export type { KindInfo } from './kinds.ts';
export { compileSelector, matchesSelector, parseSelector } from './labels.ts';
export type { Labels, Requirement } from './labels.ts';
export { diffSnapshots } from './diff.ts';
export type { SnapshotChange } from './diff.ts';
export { createInformer } from './informer.ts';
export type { EventHandlers, Informer, InformerOptions } from './informer.ts';
export { EtcdClient, EtcdDatastore, prefixEnd } from './etcd.ts';
export type { EtcdDatastoreOptions, EtcdOptions } from './etcd.ts';
export { MemoryDatastore } from './memory.ts';
export { MemoryKV } from './memory-kv.ts';
export type { MemoryWrite } from './memory-kv.ts';
export { KVDatastore } from './store.ts';
export type { KVDatastoreOptions } from './store.ts';
export type { KV, KVChange, KVItem, KVRange, KVSession, KVSink, KVWrite } from './kv.ts';
export { MirrorWatch, DEFAULT_RETRY } from './watch-engine.ts';
export type { MirrorWatchOptions, RetryOptions } from './watch-engine.ts';
export { updateWithRetry } from './retry.ts';
