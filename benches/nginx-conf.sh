#!/usr/bin/env bash
# Writes an nginx configuration to compare against: one worker, no access log, keep-alive
# practically unlimited. Without ROOT it answers `return 200 "Hello, World!"` on every path;
# with ROOT it serves that directory with sendfile on.
#   benches/nginx-conf.sh DIR PORT [ROOT]   -> prints the config's path (run: nginx -c PATH)
# With TLS_CERT and TLS_KEY set, it listens with TLS (1.2 and 1.3, session tickets on, HTTP/1.1).
set -euo pipefail
dir=$1 port=$2 root=${3:-}
listen="listen 127.0.0.1:$port;"
if [ -n "${TLS_CERT:-}" ]; then
  listen="listen 127.0.0.1:$port ssl;
    ssl_certificate $TLS_CERT; ssl_certificate_key $TLS_KEY;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets on; ssl_session_cache shared:SSL:10m;"
fi
if [ -n "$root" ]; then
  location="location / { root $root; }"
else
  location='location / { default_type text/plain; return 200 "Hello, World!"; }'
fi
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
master_process off;
pid $dir/nginx.pid;
error_log $dir/nginx.err;
events { worker_connections 20000; }
worker_rlimit_nofile 20000;
http {
  access_log off;
  sendfile on;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  include /etc/nginx/mime.types;
  ${NGINX_HTTP:-}
  client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir;
  uwsgi_temp_path $dir; scgi_temp_path $dir;
  server {
    $listen
    $location
  }
}
CONF
echo "$dir/nginx.conf"
