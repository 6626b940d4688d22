# shellcheck shell=bash
# The cluster stack's local certificate authority (sourced by infra/cluster.sh, not run): one CA and one
# server certificate for every server of the cluster stack (Kafka brokers, ClickHouse replicas, PostgreSQL
# nodes, PgBouncer), valid for the names `localhost` and `127.0.0.1`, so clients can verify the full chain
# and the host name (`sslmode=verify-full`, librdkafka's default endpoint identification, HTTPS). Made once
# with openssl under $SECRETS; the files are 0600/0644 and never printed.
#
#   ca_ensure   make $SECRETS/{ca.pem,ca.key,server.pem,server.key,server.p8.pem} if missing
#
# Needs: SECRETS (an absolute directory), say, run_logged.

CA_DAYS="${SLUICE_CLUSTER_CA_DAYS:-825}"

ca_ensure() {
  mkdir -p "$SECRETS"
  chmod 0755 "$SECRETS"
  if [[ -s "$SECRETS/ca.pem" && -s "$SECRETS/server.pem" && -s "$SECRETS/server.key" && -s "$SECRETS/server.p8.pem" ]]; then
    return 0
  fi
  say "tls: making a local CA and a server certificate (localhost, 127.0.0.1) in $SECRETS"
  local tmp; tmp=$(mktemp -d)
  run_logged "openssl CA key" openssl req -x509 -newkey rsa:2048 -nodes -days "$CA_DAYS" \
    -subj "/CN=Sluice local cluster CA" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  run_logged "openssl server key" openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$tmp/server.key" -out "$tmp/server.csr"
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$tmp/ext.cnf"
  run_logged "openssl sign server cert" openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" \
    -CAkey "$tmp/ca.key" -CAcreateserial -days "$CA_DAYS" -extfile "$tmp/ext.cnf" -out "$tmp/server.pem"
  # PKCS#8, unencrypted: the form Kafka's PEM key store reads.
  run_logged "openssl pkcs8" openssl pkcs8 -topk8 -nocrypt -in "$tmp/server.key" -out "$tmp/server.p8.pem"
  install -m 0600 "$tmp/ca.key" "$SECRETS/ca.key"
  install -m 0644 "$tmp/ca.pem" "$SECRETS/ca.pem"
  install -m 0644 "$tmp/server.pem" "$SECRETS/server.pem"
  install -m 0600 "$tmp/server.key" "$SECRETS/server.key"
  install -m 0600 "$tmp/server.p8.pem" "$SECRETS/server.p8.pem"
  rm -rf "$tmp"
}

# secret_ensure NAME: a random password in $SECRETS/NAME (made once, 0600); prints nothing.
secret_ensure() {
  local f="$SECRETS/$1"
  [[ -s "$f" ]] && return 0
  mkdir -p "$SECRETS"
  (umask 077; head -c 18 /dev/urandom | base64 | tr '+/' 'xy' >"$f")
}
