// moth-native: the truth about a TCP connection's send side (issue 14). Node exposes neither
// TCP_INFO nor SIOCOUTQ, and bytes that left ws.bufferedAmount may still sit in the kernel's send
// queue (or die there with a cut link). These calls read what the peer's TCP stack acknowledged
// and bound what the kernel may hold unsent, so the JS side (runtime/egress/tcp-probe.ts) can
// call a record delivered only once it is acknowledged, and see a thin link within a second.
//
// JS API (every failure is a thrown Error with a `code`):
//   tcpInfo(fd, out: Float64Array(TCP_INFO_FIELDS)) -> true, or false when fd is not a TCP socket
//     out = [state, rtt_us, rttvar_us, unacked_segs, bytes_acked, notsent_bytes, outq_bytes,
//            last_ack_recv_ms, retransmits, snd_cwnd, total_retrans, probes, backoff,
//            bytes_sent, delivery_rate, snd_mss]
//     outq (SIOCOUTQ) = bytes written to the kernel and not yet acknowledged (in flight + unsent).
//   setTcpOption(fd, opt, value) -> the value the kernel reports back (SO_SNDBUF is doubled by it)
//     opt: 1 TCP_NOTSENT_LOWAT (bytes), 2 SO_SNDBUF (bytes), 3 TCP_USER_TIMEOUT (ms),
//          4 SO_KEEPALIVE (0/1), 5 TCP_KEEPIDLE (s), 6 TCP_KEEPINTVL (s), 7 TCP_KEEPCNT,
//          8 SO_RCVBUF (bytes; tests bound a shaping proxy's receive window with it)
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* the kernel's tcp_info (glibc's netinet/tcp.h lacks bytes_acked and later fields) */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include "napi_args.h"

#define TCP_INFO_FIELDS 16

static napi_value errno_error(napi_env env, const char* what, int err) {
  char msg[160];
  const char* code = err == EBADF ? "NATIVE_BAD_FD" : err == ENOPROTOOPT || err == EOPNOTSUPP || err == ENOTSOCK ? "NATIVE_NOT_TCP" : "NATIVE_SOCKOPT";
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  return throw_code(env, code, msg);
}

static napi_value tcp_info(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) return throw_code(env, "NATIVE_ARG", "tcpInfo(fd, out)");
  int32_t fd;
  if (!get_fd(env, argv[0], &fd)) return throw_code(env, "NATIVE_ARG", "fd must be an integer 0..2^31-1");
  bool is_ta = false;
  napi_typedarray_type type;
  size_t length = 0;
  void* data = NULL;
  if (napi_is_typedarray(env, argv[1], &is_ta) != napi_ok || !is_ta) return throw_code(env, "NATIVE_ARG", "out must be a Float64Array");
  if (napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_float64_array || length < TCP_INFO_FIELDS)
    return throw_code(env, "NATIVE_ARG", "out must be a Float64Array of at least 16 entries");
  double* out = (double*)data;
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  memset(&ti, 0, sizeof ti);
  napi_value result;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
    if (errno == ENOTSOCK || errno == ENOPROTOOPT || errno == EOPNOTSUPP) {
      napi_get_boolean(env, false, &result);
      return result;
    }
    return errno_error(env, "getsockopt(TCP_INFO)", errno);
  }
  int outq = 0;
  if (ioctl(fd, SIOCOUTQ, &outq) != 0) outq = -1;
  out[0] = ti.tcpi_state;
  out[1] = ti.tcpi_rtt;
  out[2] = ti.tcpi_rttvar;
  out[3] = ti.tcpi_unacked;
  /* Fields newer than the 2.6 struct: present when the kernel filled that far (len says how far). */
  out[4] = len >= offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof ti.tcpi_bytes_acked ? (double)ti.tcpi_bytes_acked : -1;
  out[5] = len >= offsetof(struct tcp_info, tcpi_notsent_bytes) + sizeof ti.tcpi_notsent_bytes ? (double)ti.tcpi_notsent_bytes : -1;
  out[6] = outq;
  out[7] = ti.tcpi_last_ack_recv;
  out[8] = ti.tcpi_retransmits;
  out[9] = ti.tcpi_snd_cwnd;
  out[10] = ti.tcpi_total_retrans;
  out[11] = ti.tcpi_probes;
  out[12] = ti.tcpi_backoff;
  out[13] = len >= offsetof(struct tcp_info, tcpi_bytes_sent) + sizeof ti.tcpi_bytes_sent ? (double)ti.tcpi_bytes_sent : -1;
  out[14] = len >= offsetof(struct tcp_info, tcpi_delivery_rate) + sizeof ti.tcpi_delivery_rate ? (double)ti.tcpi_delivery_rate : -1;
  out[15] = ti.tcpi_snd_mss;
  napi_get_boolean(env, true, &result);
  return result;
}

static napi_value set_tcp_option(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) return throw_code(env, "NATIVE_ARG", "setTcpOption(fd, opt, value)");
  int32_t fd;
  uint32_t opt, value;
  if (!get_fd(env, argv[0], &fd)) return throw_code(env, "NATIVE_ARG", "fd must be an integer 0..2^31-1");
  if (!get_u32(env, argv[1], &opt)) return throw_code(env, "NATIVE_ARG", "opt must be an integer");
  if (!get_u32(env, argv[2], &value) || value > 0x7fffffff) return throw_code(env, "NATIVE_ARG", "value must be an integer 0..2^31-1");
  int level = IPPROTO_TCP, name;
  const char* what;
  switch (opt) {
    case 1: name = TCP_NOTSENT_LOWAT; what = "TCP_NOTSENT_LOWAT"; break;
    case 2: level = SOL_SOCKET; name = SO_SNDBUF; what = "SO_SNDBUF"; break;
    case 3: name = TCP_USER_TIMEOUT; what = "TCP_USER_TIMEOUT"; break;
    case 4: level = SOL_SOCKET; name = SO_KEEPALIVE; what = "SO_KEEPALIVE"; break;
    case 5: name = TCP_KEEPIDLE; what = "TCP_KEEPIDLE"; break;
    case 6: name = TCP_KEEPINTVL; what = "TCP_KEEPINTVL"; break;
    case 7: name = TCP_KEEPCNT; what = "TCP_KEEPCNT"; break;
    case 8: level = SOL_SOCKET; name = SO_RCVBUF; what = "SO_RCVBUF"; break;
    default: return throw_code(env, "NATIVE_ARG", "opt must be 1..8");
  }
  int v = (int)value;
  if (setsockopt(fd, level, name, &v, sizeof v) != 0) return errno_error(env, what, errno);
  int back = 0;
  socklen_t len = sizeof back;
  if (getsockopt(fd, level, name, &back, &len) != 0) return errno_error(env, what, errno);
  napi_value result;
  napi_create_int32(env, back, &result);
  return result;
}

napi_status moth_tcp_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"tcpInfo", NULL, tcp_info, NULL, NULL, NULL, napi_default, NULL},
      {"setTcpOption", NULL, set_tcp_option, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
