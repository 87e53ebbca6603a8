// moth-native: SRTP protect + batched UDP send of one RTP access unit (issue 4 CPU target).
// Plain N-API (node_api.h) so one binary serves every Node ABI; OpenSSL's EVP/HMAC come from the
// node process itself (Node exports its bundled OpenSSL), so nothing is linked here.
//
// JS API (runtime/native/index.ts wraps it; every failure is a thrown Error with a `code`):
//   createContext(profile, key, salt, authKey|null) -> context (external)
//     profile 1 = AES_CM_128_HMAC_SHA1_80 (RFC 3711), 7 = AEAD_AES_128_GCM (RFC 7714): werift's ids.
//   protect(ctx, pt, seq, timestamp, ssrc, roc, marker, payload) -> Buffer  (one packet; tests)
//   sendAu(ctx, fd, addr, port, pt, firstSeq, timestamp, ssrc, roc, payloads[]) -> packets sent
//     RTP header (no CSRC, no extension, marker on the last packet), SRTP protect, and all packets
//     through sendmmsg() on fd in batches of 64, MSG_DONTWAIT. ROC steps when seq wraps to 0.
//     A full socket buffer (EAGAIN) stops the send: the count returned says how many went.
//   sendAnnexB(ctx, fd, addr, port, pt, firstSeq, timestamp, ssrc, roc, au, mtu, plan) -> packets sent
//     The same for one Annex-B access unit packetized here exactly as packetizeH264 does
//     (runtime/egress/h264-rtp.ts: a NAL that fits alone, a larger one as FU-A fragments, AUD and
//     filler dropped), so no per-packet Buffer exists in JavaScript. plan (Uint32Array) receives
//     [packets, payload bytes, then per packet: offset in au, length, FU indicator<<8|FU header (0:
//     single NAL)]: what the caller's NACK history needs to rebuild a payload on demand.
//   packetize(au, mtu, plan) -> packets: only the plan (tests compare it with packetizeH264).
#define _GNU_SOURCE
#include <node_api.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "napi_args.h"

#define PROFILE_CM_SHA1_80 1
#define PROFILE_GCM_128 7
#define RTP_HDR 12
#define MAX_PACKET 1500 /* protected packet ceiling: Ethernet MTU */
#define BATCH 64
#define MAX_AU_PACKETS 4096
#define PLAN_HEAD 2
#define PLAN_STRIDE 3

typedef struct {
  int profile;
  unsigned tag_len;
  unsigned char key[16];
  unsigned char salt[14];
  unsigned char auth_key[20];
  EVP_CIPHER_CTX* evp;
  unsigned char* scratch; /* BATCH * MAX_PACKET */
  unsigned char stage[MAX_PACKET]; /* one FU-A payload (2 header bytes + slice) before protect */
} srtp_ctx;

#define CHECK(call)                                                            \
  do {                                                                         \
    if ((call) != napi_ok) return throw_code(env, "NATIVE_ARG", "bad argument: " #call); \
  } while (0)

static void ctx_finalize(napi_env env, void* data, void* hint) {
  (void)env;
  (void)hint;
  srtp_ctx* c = (srtp_ctx*)data;
  if (!c) return;
  if (c->evp) EVP_CIPHER_CTX_free(c->evp);
  free(c->scratch);
  OPENSSL_cleanse(c->key, sizeof c->key);
  OPENSSL_cleanse(c->auth_key, sizeof c->auth_key);
  free(c);
}

static int get_buffer(napi_env env, napi_value v, unsigned char** data, size_t* len) {
  bool is = false;
  if (napi_is_buffer(env, v, &is) != napi_ok || !is) return 0;
  return napi_get_buffer_info(env, v, (void**)data, len) == napi_ok;
}

static srtp_ctx* get_ctx(napi_env env, napi_value v) {
  napi_valuetype t;
  void* p = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return (srtp_ctx*)p;
}

/* createContext(profile, key[16], salt[14], authKey[20] | null) */
static napi_value create_context(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) return throw_code(env, "NATIVE_ARG", "createContext(profile, key, salt, authKey)");
  uint32_t profile;
  unsigned char *key, *salt, *auth = NULL;
  size_t key_len, salt_len, auth_len = 0;
  if (!get_u32(env, argv[0], &profile) || (profile != PROFILE_CM_SHA1_80 && profile != PROFILE_GCM_128))
    return throw_code(env, "NATIVE_SRTP_PROFILE", "unsupported SRTP profile (1: AES_CM_128_HMAC_SHA1_80, 7: AEAD_AES_128_GCM)");
  if (!get_buffer(env, argv[1], &key, &key_len) || key_len != 16) return throw_code(env, "NATIVE_SRTP_KEY", "session key must be a 16-byte Buffer");
  if (!get_buffer(env, argv[2], &salt, &salt_len) || salt_len != 14) return throw_code(env, "NATIVE_SRTP_KEY", "session salt must be a 14-byte Buffer");
  if (profile == PROFILE_CM_SHA1_80 && (!get_buffer(env, argv[3], &auth, &auth_len) || auth_len != 20))
    return throw_code(env, "NATIVE_SRTP_KEY", "session auth key must be a 20-byte Buffer for AES_CM_128_HMAC_SHA1_80");
  srtp_ctx* c = (srtp_ctx*)calloc(1, sizeof *c);
  if (!c) return throw_code(env, "NATIVE_NOMEM", "out of memory");
  c->profile = (int)profile;
  c->tag_len = profile == PROFILE_GCM_128 ? 16 : 10;
  memcpy(c->key, key, 16);
  memcpy(c->salt, salt, 14);
  if (auth) memcpy(c->auth_key, auth, 20);
  c->scratch = (unsigned char*)malloc((size_t)BATCH * MAX_PACKET);
  c->evp = EVP_CIPHER_CTX_new();
  const EVP_CIPHER* cipher = profile == PROFILE_GCM_128 ? EVP_aes_128_gcm() : EVP_aes_128_ctr();
  if (!c->scratch || !c->evp || EVP_EncryptInit_ex(c->evp, cipher, NULL, c->key, NULL) != 1) {
    ctx_finalize(env, c, NULL);
    return throw_code(env, "NATIVE_SRTP_INIT", "OpenSSL cipher init failed");
  }
  napi_value ext;
  if (napi_create_external(env, c, ctx_finalize, NULL, &ext) != napi_ok) {
    ctx_finalize(env, c, NULL);
    return throw_code(env, "NATIVE_NOMEM", "could not create the context object");
  }
  return ext;
}

/* Writes header + protected payload + tag to out; returns the packet length, 0 on a cipher failure. */
static size_t protect_one(srtp_ctx* c, unsigned char* out, uint32_t pt, uint32_t seq, uint32_t ts, uint32_t ssrc, uint32_t roc, int marker,
                          const unsigned char* payload, size_t len) {
  out[0] = 0x80;
  out[1] = (unsigned char)((marker ? 0x80 : 0) | (pt & 0x7f));
  out[2] = (unsigned char)(seq >> 8);
  out[3] = (unsigned char)seq;
  out[4] = (unsigned char)(ts >> 24);
  out[5] = (unsigned char)(ts >> 16);
  out[6] = (unsigned char)(ts >> 8);
  out[7] = (unsigned char)ts;
  out[8] = (unsigned char)(ssrc >> 24);
  out[9] = (unsigned char)(ssrc >> 16);
  out[10] = (unsigned char)(ssrc >> 8);
  out[11] = (unsigned char)ssrc;
  unsigned char* body = out + RTP_HDR;
  int outl = 0;
  if (c->profile == PROFILE_GCM_128) {
    /* RFC 7714 8.1: IV = (00 00 || SSRC || ROC || SEQ) XOR salt[0..12] */
    unsigned char iv[12] = {0, 0, out[8], out[9], out[10], out[11], (unsigned char)(roc >> 24), (unsigned char)(roc >> 16),
                            (unsigned char)(roc >> 8), (unsigned char)roc, out[2], out[3]};
    for (int i = 0; i < 12; i++) iv[i] ^= c->salt[i];
    if (EVP_EncryptInit_ex(c->evp, NULL, NULL, NULL, iv) != 1) return 0;
    if (EVP_EncryptUpdate(c->evp, NULL, &outl, out, RTP_HDR) != 1) return 0;
    if (len > 0 && EVP_EncryptUpdate(c->evp, body, &outl, payload, (int)len) != 1) return 0;
    if (EVP_EncryptFinal_ex(c->evp, body + len, &outl) != 1) return 0;
    if (EVP_CIPHER_CTX_ctrl(c->evp, EVP_CTRL_GCM_GET_TAG, 16, body + len) != 1) return 0;
    return RTP_HDR + len + 16;
  }
  /* RFC 3711 4.1.1: counter = (salt << 16) XOR (SSRC << 64) XOR (index << 16) */
  unsigned char ctr[16] = {0, 0, 0, 0, out[8], out[9], out[10], out[11], (unsigned char)(roc >> 24), (unsigned char)(roc >> 16),
                           (unsigned char)(roc >> 8), (unsigned char)roc, out[2], out[3], 0, 0};
  for (int i = 0; i < 14; i++) ctr[i] ^= c->salt[i];
  if (EVP_EncryptInit_ex(c->evp, NULL, NULL, NULL, ctr) != 1) return 0;
  if (len > 0 && EVP_EncryptUpdate(c->evp, body, &outl, payload, (int)len) != 1) return 0;
  /* RFC 3711 4.2: tag = HMAC-SHA1(auth key, header || encrypted payload || ROC)[0..10] */
  unsigned char* rocp = body + len;
  rocp[0] = (unsigned char)(roc >> 24);
  rocp[1] = (unsigned char)(roc >> 16);
  rocp[2] = (unsigned char)(roc >> 8);
  rocp[3] = (unsigned char)roc;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!HMAC(EVP_sha1(), c->auth_key, 20, out, RTP_HDR + len + 4, md, &mdlen) || mdlen < 10) return 0;
  memcpy(rocp, md, 10);
  return RTP_HDR + len + 10;
}

/* protect(ctx, pt, seq, timestamp, ssrc, roc, marker, payload) -> Buffer */
static napi_value protect(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 8) return throw_code(env, "NATIVE_ARG", "protect(ctx, pt, seq, timestamp, ssrc, roc, marker, payload)");
  srtp_ctx* c = get_ctx(env, argv[0]);
  if (!c) return throw_code(env, "NATIVE_ARG", "not an SRTP context");
  uint32_t f[5];
  for (int i = 0; i < 5; i++)
    if (!get_u32(env, argv[1 + i], &f[i])) return throw_code(env, "NATIVE_ARG", "pt, seq, timestamp, ssrc and roc must be numbers");
  bool marker = false;
  CHECK(napi_get_value_bool(env, argv[6], &marker));
  unsigned char* payload;
  size_t len;
  if (!get_buffer(env, argv[7], &payload, &len)) return throw_code(env, "NATIVE_ARG", "payload must be a Buffer");
  if (len + RTP_HDR + c->tag_len + 4 > MAX_PACKET) return throw_code(env, "NATIVE_OVERSIZE", "payload does not fit one packet (1500 bytes with header and tag)");
  if (f[0] > 127 || f[1] > 0xffff) return throw_code(env, "NATIVE_ARG", "payload type 0..127, sequence number 0..65535");
  unsigned char* out = c->scratch;
  size_t n = protect_one(c, out, f[0], f[1], f[2], f[3], f[4], marker, payload, len);
  if (n == 0) return throw_code(env, "NATIVE_SRTP_CIPHER", "OpenSSL encryption failed");
  napi_value buf;
  CHECK(napi_create_buffer_copy(env, n, out, NULL, &buf));
  return buf;
}

/* Fills sockaddr from an IP literal and port; 0 when addr is neither IPv4 nor IPv6. */
static int make_addr(const char* addr, uint32_t port, struct sockaddr_storage* ss, socklen_t* sslen) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in* s4 = (struct sockaddr_in*)ss;
  struct sockaddr_in6* s6 = (struct sockaddr_in6*)ss;
  if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    *sslen = sizeof *s4;
    return 1;
  }
  if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    *sslen = sizeof *s6;
    return 1;
  }
  return 0;
}

/* What sendAu and sendAnnexB share: (ctx, fd, addr, port, pt, firstSeq, timestamp, ssrc, roc). */
typedef struct {
  srtp_ctx* c;
  int32_t fd;
  struct sockaddr_storage ss;
  socklen_t sslen;
  uint32_t pt, seq, ts, ssrc, roc;
  uint32_t sent;
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
} send_state;

/* Parses argv[0..8] into st; NULL-returning throw (and 0) on bad input, nothing sent. */
static int get_send_head(napi_env env, napi_value* argv, send_state* st) {
  st->c = get_ctx(env, argv[0]);
  if (!st->c) return throw_code(env, "NATIVE_ARG", "not an SRTP context"), 0;
  if (!get_fd(env, argv[1], &st->fd)) return throw_code(env, "NATIVE_FD", "socket fd must be a non-negative integer"), 0;
  char addr[64];
  size_t addr_len = 0;
  napi_valuetype t;
  if (napi_typeof(env, argv[2], &t) != napi_ok || t != napi_string || napi_get_value_string_utf8(env, argv[2], addr, sizeof addr, &addr_len) != napi_ok)
    return throw_code(env, "NATIVE_ARG", "addr must be a string"), 0;
  uint32_t port;
  if (!get_u32(env, argv[3], &port) || !get_u32(env, argv[4], &st->pt) || !get_u32(env, argv[5], &st->seq) || !get_u32(env, argv[6], &st->ts) ||
      !get_u32(env, argv[7], &st->ssrc) || !get_u32(env, argv[8], &st->roc))
    return throw_code(env, "NATIVE_ARG", "port, pt, firstSeq, timestamp, ssrc and roc must be numbers"), 0;
  if (port == 0 || port > 0xffff || st->pt > 127 || st->seq > 0xffff) return throw_code(env, "NATIVE_ARG", "port 1..65535, payload type 0..127, sequence number 0..65535"), 0;
  if (!make_addr(addr, port, &st->ss, &st->sslen)) return throw_code(env, "NATIVE_ADDR", "addr is not an IPv4 or IPv6 literal"), 0;
  st->sent = 0;
  return 1;
}

/* Protect packet j of the current batch (the AU's last when `last`) into the scratch buffer and
 * address it; steps seq and the rollover counter. 0 when OpenSSL failed (thrown). */
static int stage_packet(napi_env env, send_state* st, uint32_t j, int last, const unsigned char* payload, size_t len) {
  unsigned char* out = st->c->scratch + (size_t)j * MAX_PACKET;
  size_t plen = protect_one(st->c, out, st->pt, st->seq, st->ts, st->ssrc, st->roc, last, payload, len);
  if (plen == 0) return throw_code(env, "NATIVE_SRTP_CIPHER", "OpenSSL encryption failed"), 0;
  st->iov[j].iov_base = out;
  st->iov[j].iov_len = plen;
  memset(&st->msgs[j], 0, sizeof st->msgs[j]);
  st->msgs[j].msg_hdr.msg_name = &st->ss;
  st->msgs[j].msg_hdr.msg_namelen = st->sslen;
  st->msgs[j].msg_hdr.msg_iov = &st->iov[j];
  st->msgs[j].msg_hdr.msg_iovlen = 1;
  st->seq = (st->seq + 1) & 0xffff;
  if (st->seq == 0) st->roc++; /* the next packet starts a new rollover period */
  return 1;
}

/* sendmmsg the n staged packets. 1: all went, keep going; 0: stop (socket buffer full — the rest
 * of the AU is dropped, the caller counts it — or an error after some went: the next call throws);
 * -1: thrown (an error before anything went). st->sent counts what went. */
static int flush_batch(napi_env env, send_state* st, uint32_t n) {
  uint32_t done = 0;
  while (done < n) {
    int r = sendmmsg(st->fd, st->msgs + done, n - done, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) break;
      if (st->sent + done > 0) break;
      char msg[96];
      snprintf(msg, sizeof msg, "sendmmsg failed: %s (errno %d)", strerror(errno), errno);
      throw_code(env, errno == EBADF || errno == ENOTSOCK ? "NATIVE_FD" : "NATIVE_SEND", msg);
      return -1;
    }
    done += (uint32_t)r;
  }
  st->sent += done;
  return done == n;
}

static napi_value sent_count(napi_env env, const send_state* st) {
  napi_value res;
  CHECK(napi_create_uint32(env, st->sent, &res));
  return res;
}

/* sendAu(ctx, fd, addr, port, pt, firstSeq, timestamp, ssrc, roc, payloads[]) -> packets sent */
static napi_value send_au(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 10) return throw_code(env, "NATIVE_ARG", "sendAu(ctx, fd, addr, port, pt, firstSeq, timestamp, ssrc, roc, payloads)");
  send_state st;
  if (!get_send_head(env, argv, &st)) return NULL;
  bool is_array = false;
  uint32_t count = 0;
  if (napi_is_array(env, argv[9], &is_array) != napi_ok || !is_array) return throw_code(env, "NATIVE_ARG", "payloads must be an array of Buffers");
  CHECK(napi_get_array_length(env, argv[9], &count));
  if (count > MAX_AU_PACKETS) return throw_code(env, "NATIVE_OVERSIZE", "more than 4096 packets in one access unit");
  /* Validate every payload before anything goes out: a bad one throws with nothing sent. */
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    unsigned char* p;
    size_t len;
    CHECK(napi_get_element(env, argv[9], i, &el));
    if (!get_buffer(env, el, &p, &len)) return throw_code(env, "NATIVE_ARG", "payloads must be an array of Buffers");
    if (len + RTP_HDR + st.c->tag_len + 4 > MAX_PACKET) return throw_code(env, "NATIVE_OVERSIZE", "payload does not fit one packet (1500 bytes with header and tag)");
  }
  for (uint32_t base = 0; base < count; base += BATCH) {
    uint32_t n = count - base < BATCH ? count - base : BATCH;
    for (uint32_t j = 0; j < n; j++) {
      napi_value el;
      unsigned char* p;
      size_t len;
      CHECK(napi_get_element(env, argv[9], base + j, &el));
      CHECK(napi_get_buffer_info(env, el, (void**)&p, &len));
      if (!stage_packet(env, &st, j, base + j == count - 1, p, len)) return NULL;
    }
    int r = flush_batch(env, &st, n);
    if (r < 0) return NULL;
    if (r == 0) break;
  }
  return sent_count(env, &st);
}

/* ---- H.264 Annex-B packetizer (the same output as packetizeH264 in runtime/egress/h264-rtp.ts) ---- */

/* Index of the next 00 00 01 at or after `from`, or -1 (Buffer#indexOf(START3, from)). */
static long find_start3(const unsigned char* b, size_t len, size_t from) {
  for (size_t i = from; i + 2 < len; i++) {
    if (b[i + 2] > 1) {
      i += 2; /* no start code can begin at i, i+1 or i+2 */
      continue;
    }
    if (b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 1) return (long)i;
  }
  return -1;
}

typedef struct {
  uint32_t* plan;
  size_t cap; /* packets the plan holds */
  uint32_t n;
  uint32_t bytes;
} plan_t;

/* Plans one NAL [off, off+len) of au; 0 when the plan is full. */
static int plan_nal(plan_t* p, const unsigned char* au, size_t off, size_t len, size_t mtu) {
  unsigned t = au[off] & 0x1f;
  if (t == 9 || t == 12) return 1; /* AUD, filler */
  if (len <= mtu) {
    if (p->n >= p->cap) return 0;
    uint32_t* e = p->plan + PLAN_HEAD + (size_t)p->n * PLAN_STRIDE;
    e[0] = (uint32_t)off;
    e[1] = (uint32_t)len;
    e[2] = 0;
    p->n++;
    p->bytes += (uint32_t)len;
    return 1;
  }
  size_t chunk = mtu - 2;
  unsigned ind = (au[off] & 0xe0) | 28;
  for (size_t o = 1; o < len;) {
    size_t end = o + chunk < len ? o + chunk : len;
    if (p->n >= p->cap) return 0;
    uint32_t* e = p->plan + PLAN_HEAD + (size_t)p->n * PLAN_STRIDE;
    e[0] = (uint32_t)(off + o);
    e[1] = (uint32_t)(end - o);
    e[2] = (ind << 8) | (o == 1 ? 0x80 : 0) | (end == len ? 0x40 : 0) | t;
    p->n++;
    p->bytes += (uint32_t)(end - o + 2);
    o = end;
  }
  return 1;
}

/* splitAnnexB + the packetizer's loop; 0 when more packets than the plan holds. */
static int plan_au(plan_t* p, const unsigned char* au, size_t len, size_t mtu) {
  p->n = 0;
  p->bytes = 0;
  long i = find_start3(au, len, 0);
  if (i < 0) return len == 0 ? 1 : plan_nal(p, au, 0, len, mtu); /* no start code: one raw NAL */
  while (i >= 0) {
    size_t start = (size_t)i + 3;
    long next = find_start3(au, len, start);
    size_t end = next < 0 ? len : (size_t)next;
    while (end > start && au[end - 1] == 0) end--;
    if (end > start && !plan_nal(p, au, start, end - start, mtu)) return 0;
    i = next;
  }
  return 1;
}

/* The au Buffer, mtu and plan Uint32Array of argv[0..2]; NULL after throwing a typed error. */
static int get_plan_args(napi_env env, napi_value* argv, size_t max_mtu, unsigned char** au, size_t* au_len, uint32_t* mtu, plan_t* p) {
  if (!get_buffer(env, argv[0], au, au_len)) return throw_code(env, "NATIVE_ARG", "au must be a Buffer"), 0;
  if (*au_len > 0xffffffffu) return throw_code(env, "NATIVE_OVERSIZE", "access unit over 4 GiB"), 0;
  if (!get_u32(env, argv[1], mtu) || *mtu < 16 || *mtu > max_mtu) {
    char msg[96];
    snprintf(msg, sizeof msg, "mtu must be a number 16..%u", (unsigned)max_mtu);
    return throw_code(env, "NATIVE_ARG", msg), 0;
  }
  bool is = false;
  napi_typedarray_type tt;
  size_t n = 0;
  void* data = NULL;
  if (napi_is_typedarray(env, argv[2], &is) != napi_ok || !is || napi_get_typedarray_info(env, argv[2], &tt, &n, &data, NULL, NULL) != napi_ok ||
      tt != napi_uint32_array || n < PLAN_HEAD + PLAN_STRIDE)
    return throw_code(env, "NATIVE_ARG", "plan must be a Uint32Array of at least 5 entries"), 0;
  p->plan = (uint32_t*)data;
  p->cap = (n - PLAN_HEAD) / PLAN_STRIDE;
  if (p->cap > MAX_AU_PACKETS) p->cap = MAX_AU_PACKETS;
  if (!plan_au(p, *au, *au_len, *mtu)) return throw_code(env, "NATIVE_OVERSIZE", "access unit needs more packets than the plan holds (at most 4096)"), 0;
  p->plan[0] = p->n;
  p->plan[1] = p->bytes;
  return 1;
}

/* packetize(au, mtu, plan) -> packets */
static napi_value packetize(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) return throw_code(env, "NATIVE_ARG", "packetize(au, mtu, plan)");
  unsigned char* au;
  size_t au_len;
  uint32_t mtu;
  plan_t p;
  if (!get_plan_args(env, argv, 65535, &au, &au_len, &mtu, &p)) return NULL;
  napi_value res;
  CHECK(napi_create_uint32(env, p.n, &res));
  return res;
}

/* sendAnnexB(ctx, fd, addr, port, pt, firstSeq, timestamp, ssrc, roc, au, mtu, plan) -> packets sent */
static napi_value send_annexb(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 12) return throw_code(env, "NATIVE_ARG", "sendAnnexB(ctx, fd, addr, port, pt, firstSeq, timestamp, ssrc, roc, au, mtu, plan)");
  send_state st;
  if (!get_send_head(env, argv, &st)) return NULL;
  srtp_ctx* c = st.c;
  unsigned char* au;
  size_t au_len;
  uint32_t mtu;
  plan_t p;
  /* header, payload, tag and the 4 ROC bytes the SHA1 tag is computed over fit one packet buffer */
  if (!get_plan_args(env, argv + 9, MAX_PACKET - RTP_HDR - c->tag_len - 4, &au, &au_len, &mtu, &p)) return NULL;
  for (uint32_t base = 0; base < p.n; base += BATCH) {
    uint32_t n = p.n - base < BATCH ? p.n - base : BATCH;
    for (uint32_t j = 0; j < n; j++) {
      const uint32_t* e = p.plan + PLAN_HEAD + (size_t)(base + j) * PLAN_STRIDE;
      const unsigned char* payload = au + e[0];
      size_t len = e[1];
      if (e[2] != 0) {
        c->stage[0] = (unsigned char)(e[2] >> 8);
        c->stage[1] = (unsigned char)e[2];
        memcpy(c->stage + 2, payload, len);
        payload = c->stage;
        len += 2;
      }
      if (!stage_packet(env, &st, j, base + j == p.n - 1, payload, len)) return NULL;
    }
    int r = flush_batch(env, &st, n);
    if (r < 0) return NULL;
    if (r == 0) break;
  }
  return sent_count(env, &st);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"createContext", NULL, create_context, NULL, NULL, NULL, napi_default, NULL},
      {"protect", NULL, protect, NULL, NULL, NULL, napi_default, NULL},
      {"sendAu", NULL, send_au, NULL, NULL, NULL, napi_default, NULL},
      {"sendAnnexB", NULL, send_annexb, NULL, NULL, NULL, napi_default, NULL},
      {"packetize", NULL, packetize, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  if (moth_tcp_register(env, exports) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
