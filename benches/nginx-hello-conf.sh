#!/usr/bin/env bash
# Writes an nginx configuration to compare against: one worker, no access log, keep-alive
# practically unlimited, `return 200 "Hello, World!"` on every path.
#   benches/nginx-hello-conf.sh DIR PORT   -> prints the config's path (run: nginx -c PATH)
set -euo pipefail
dir=$1 port=$2
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
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir;
  uwsgi_temp_path $dir; scgi_temp_path $dir;
  server {
    listen 127.0.0.1:$port;
    location / { default_type text/plain; return 200 "Hello, World!"; }
  }
}
CONF
echo "$dir/nginx.conf"
