{
  "targets": [
    {
      "target_name": "moth_native",
      "sources": ["runtime/native/srtp_send.c", "runtime/native/tcp_link.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-deprecated-declarations"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
