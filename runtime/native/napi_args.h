// Argument helpers shared by moth-native's C files: strict integers (NaN, fractions and negatives
// are refused, not truncated) and errors thrown with a stable `code`.
#ifndef MOTH_NAPI_ARGS_H
#define MOTH_NAPI_ARGS_H
#include <node_api.h>
#include <stdint.h>

static inline napi_value throw_code(napi_env env, const char* code, const char* msg) {
  napi_throw_error(env, code, msg);
  return NULL;
}

/* An integer 0..2^32-1. */
static inline int get_u32(napi_env env, napi_value v, uint32_t* out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= 0 && d <= 4294967295.0) || d != (double)(uint32_t)d) return 0;
  *out = (uint32_t)d;
  return 1;
}

/* A file descriptor: an integer 0..INT32_MAX. */
static inline int get_fd(napi_env env, napi_value v, int32_t* out) {
  uint32_t u;
  if (!get_u32(env, v, &u) || u > 0x7fffffff) return 0;
  *out = (int32_t)u;
  return 1;
}

/* Registers the TCP link functions (tcp_link.c) on the addon's exports. */
napi_status moth_tcp_register(napi_env env, napi_value exports);

#endif
