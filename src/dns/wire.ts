/**
 * What the wire needs beyond encode/decode (which dns-packet does): DNS-over-TCP framing
 * (a two-octet length before every message, RFC 1035 4.2.2 / RFC 7766), header fields read
 * straight from the bytes for replies to messages that do not decode, and fitting a
 * response into the size the transport allows (RFC 1035 4.2.1, RFC 6891, RFC 2181 9).
 */
import * as packet from 'dns-packet';
import type { Answer, OptAnswer, Packet } from 'dns-packet';

export const RCODES = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
/** Extended rcode 16 (RFC 6891): the high 8 bits go in the OPT record, the low 4 in the header. */
export const BADVERS = 16;
export const OPCODE_QUERY = 0;
export const FLAG_QR = 1 << 15;
export const FLAG_AA = packet.AUTHORITATIVE_ANSWER;
export const FLAG_TC = packet.TRUNCATED_RESPONSE;
export const FLAG_RD = packet.RECURSION_DESIRED;
export const FLAG_RA = packet.RECURSION_AVAILABLE;
export const FLAG_CD = packet.CHECKING_DISABLED;
export const DO_BIT = packet.DNSSEC_OK;

/** The classic UDP limit, for queries without EDNS. */
export const CLASSIC_UDP_SIZE = 512;
/** The largest message TCP framing can carry. */
export const MAX_MESSAGE = 65535;

export function frame(msg: Buffer): Buffer {
  const out = Buffer.allocUnsafe(msg.length + 2);
  out.writeUInt16BE(msg.length, 0);
  msg.copy(out, 2);
  return out;
}

/** Splits a TCP byte stream into DNS messages. */
export class FrameReader {
  #buf: Buffer = Buffer.alloc(0);

  /** Adds bytes; returns every message now complete. */
  push(chunk: Buffer): Buffer[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: Buffer[] = [];
    while (this.#buf.length >= 2) {
      const len = this.#buf.readUInt16BE(0);
      if (this.#buf.length < 2 + len) break;
      out.push(this.#buf.subarray(2, 2 + len));
      this.#buf = this.#buf.subarray(2 + len);
    }
    return out;
  }
}

/** The query's header fields, read from the bytes (for FORMERR replies to what does not decode). */
export function rawHeader(msg: Buffer): { id: number; flags: number; opcode: number; qr: boolean } | undefined {
  if (msg.length < 12) return undefined;
  const flags = msg.readUInt16BE(2);
  return { id: msg.readUInt16BE(0), flags, opcode: (flags >> 11) & 0xf, qr: (flags & FLAG_QR) !== 0 };
}

/** A header-only reply (FORMERR, NOTIMP) for a message we will not look into. */
export function headerOnlyReply(id: number, opcode: number, rd: boolean, rcode: number): Buffer {
  const buf = Buffer.alloc(12);
  buf.writeUInt16BE(id, 0);
  buf.writeUInt16BE(FLAG_QR | (opcode << 11) | (rd ? FLAG_RD : 0) | FLAG_RA | (rcode & 0xf), 2);
  return buf;
}

export function optRecord(udpPayloadSize: number, extendedRcode = 0, dnssecOk = false): OptAnswer {
  return { name: '.', type: 'OPT', udpPayloadSize, extendedRcode, ednsVersion: 0, flags: dnssecOk ? DO_BIT : 0, flag_do: dnssecOk, options: [] };
}

/**
 * Encodes `p` to fit in `limit` octets. First the additional section goes (except OPT),
 * which needs no TC bit (RFC 2181 9); if the answer still does not fit, the answer and
 * authority sections go too and TC is set, so the client asks again over TCP.
 */
export function encodeWithin(p: Packet, limit: number): { buf: Buffer; truncated: boolean } {
  const buf = packet.encode(p);
  if (buf.length <= limit) return { buf, truncated: false };
  const opt = (p.additionals ?? []).filter((a: Answer) => a.type === 'OPT');
  const lean: Packet = { ...p, additionals: opt };
  if ((p.additionals ?? []).length > opt.length) {
    const b = packet.encode(lean);
    if (b.length <= limit) return { buf: b, truncated: false };
  }
  const cut: Packet = { ...lean, flags: (p.flags ?? 0) | FLAG_TC, answers: [], authorities: [] };
  return { buf: packet.encode(cut), truncated: true };
}
