/**
 * Chain and set names. Like kube-proxy, every per-service object gets a name made of a short
 * hash of what it stands for and a readable suffix:
 *
 *   svc-4QX2LM7A-default-web-http                     the service's cluster-wide endpoints
 *   local-4QX2LM7A-default-web-http                   its endpoints on this node
 *   ext-4QX2LM7A-default-web-http                     traffic to its NodePort / external / LB IPs
 *   ep-K3VJ2N5Q-default-web-http-10.244.1.5-8080      one endpoint (the DNAT)
 *   aff-S6FZQB3C-default-web-http-10.244.1.5-8080     ClientIP affinity of one endpoint
 *
 * The hash makes names unique (the suffix alone could be ambiguous, `a-b`/`c` against
 * `a`/`b-c`) and stable across restarts, so a sync can tell its own objects by pattern and
 * delete the ones no service claims any more. The affinity timeout is part of the set's hash:
 * nftables keeps the old timeout when a set is "added" again, so a new timeout gets a new set.
 *
 * iptables allows 28 characters per chain name, so there the name is all hash, as in
 * kube-proxy (PODNET-SVC-…, 16 base32 characters), with the readable part in a comment.
 */
import { createHash } from 'node:crypto';
import type { EndpointInfo, ServiceInfo } from './types.ts';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** The first `length` base32 characters of the SHA-256 of `text`. */
export function hashName(text: string, length: number): string {
  const digest = createHash('sha256').update(text).digest();
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of digest) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < length) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length >= length) break;
    value &= (1 << bits) - 1;
  }
  return out;
}

const MAX_SUFFIX = 180;

function clean(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]/g, '_');
}

/** The readable part: `namespace-name-portName` (or the port number when unnamed). */
export function serviceSuffix(svc: ServiceInfo): string {
  return clean(`${svc.namespace}-${svc.name}-${svc.portName || svc.port}`).slice(0, MAX_SUFFIX);
}

function endpointSuffix(ep: Pick<EndpointInfo, 'ip' | 'port'>): string {
  return clean(`${ep.ip.replaceAll(':', '.')}-${ep.port}`);
}

export type ServiceChainKind = 'svc' | 'local' | 'ext';

/** A service's policy or external chain. The protocol is hashed too: `key` names the port only. */
export function serviceChain(kind: ServiceChainKind, svc: ServiceInfo): string {
  return `${kind}-${hashName(`${svc.key}/${svc.protocol}`, 8)}-${serviceSuffix(svc)}`;
}

export function endpointChain(svc: ServiceInfo, ep: Pick<EndpointInfo, 'ip' | 'port'>): string {
  return `ep-${hashName(`${svc.key}/${svc.protocol}|${ep.ip}|${ep.port}`, 8)}-${serviceSuffix(svc)}-${endpointSuffix(ep)}`;
}

export function affinitySet(svc: ServiceInfo, ep: Pick<EndpointInfo, 'ip' | 'port'>): string {
  const h = hashName(`${svc.key}/${svc.protocol}|${ep.ip}|${ep.port}|${svc.affinityTimeoutSeconds}`, 8);
  return `aff-${h}-${serviceSuffix(svc)}-${endpointSuffix(ep)}`;
}

/** Chains and sets the nftables planner made for some service (live or stale). */
export const SERVICE_CHAIN_PATTERN = /^(svc|local|ext|ep)-[A-Z2-7]{8}-/;
export const AFFINITY_SET_PATTERN = /^aff-[A-Z2-7]{8}-/;

// iptables ---------------------------------------------------------------------------------

export const IPT_PREFIX = 'PODNET-';

export function iptServiceChain(kind: 'SVC' | 'SVL' | 'EXT', svc: ServiceInfo): string {
  return `${IPT_PREFIX}${kind}-${hashName(`${svc.key}/${svc.protocol}`, 16)}`;
}

export function iptEndpointChain(svc: ServiceInfo, ep: Pick<EndpointInfo, 'ip' | 'port'>): string {
  return `${IPT_PREFIX}SEP-${hashName(`${svc.key}/${svc.protocol}|${ep.ip}|${ep.port}`, 16)}`;
}

export const IPT_SERVICE_CHAIN_PATTERN = /^PODNET-(SVC|SVL|EXT|SEP)-[A-Z2-7]{16}$/;
