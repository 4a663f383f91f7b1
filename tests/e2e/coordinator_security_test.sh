#!/usr/bin/env bash
# The real coordinator's security rules, with coordctl and the load generator
# as clients: listening beyond loopback without a token is refused unless
# --insecure; a token file others can read is warned about; TLS with a CA
# and a server certificate made here by openssl (a plaintext client and a
# client trusting another CA are refused); token roles; and no token (the
# admin, the read-only or a wrong one) appears in any log, the coordinator
# and the clients running at debug level or finer.
# usage: coordinator_security_test.sh BIN_DIR
source "$(dirname "$0")/lib.sh"
bin="$1"

"$bin/make-synthetic-cifar" --out "$TMP/data" --train 200 --test 50 --classes 10 >/dev/null 2>&1 ||
  fail "make-synthetic-cifar"
admin_token="admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
read_token="read-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
wrong_token="wrong-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
echo "$admin_token" >"$TMP/admin.token"
echo "$read_token" >"$TMP/read.token"
echo "$wrong_token" >"$TMP/wrong.token"
chmod 644 "$TMP/admin.token"  # readable by everyone: warned about
chmod 600 "$TMP/read.token" "$TMP/wrong.token"
common=(--dataset "synthetic=$TMP/data" --checkpoint-dir "$TMP/ckpt" --state-dir "$TMP/state")

# ---- Listening address. All interfaces without a token: refused at start.
expect_fail "$TMP/open.out" "$bin/coordinator" --listen 0.0.0.0:0 "${common[@]}"
expect_contains "$TMP/open.out" "--listen 0.0.0.0:0 is not a loopback address and no --token-file"
expect_contains "$TMP/open.out" "--insecure"
# ... unless --insecure says so, with a warning.
launch_coordinator "$TMP/port0" "$TMP/insecure.log" \
  "$bin/coordinator" --listen 0.0.0.0:0 --insecure --port-file "$TMP/port0" "${common[@]}"
"$bin/coordctl" --coordinator "$address" --retry-for 5 status \
  >"$TMP/insecure-status.out" 2>&1 || { cat "$TMP/insecure-status.out"; fail "status (--insecure)"; }
stop_coordinator
expect_contains "$TMP/insecure.log" "--insecure: serving 0.0.0.0:$(cat "$TMP/port0") without tokens"
# The default is loopback.
"$bin/coordinator" --help >"$TMP/help.out" 2>&1 || true
expect_contains "$TMP/help.out" "127.0.0.1:50051"

# ---- Certificates: a CA, a server certificate it signs, and another CA.
for ca in ca other-ca; do
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$ca" \
    -keyout "$TMP/$ca.key" -out "$TMP/$ca.pem" >/dev/null 2>&1 || fail "openssl: $ca"
done
echo "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$TMP/san.ext"
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$TMP/server.key" \
  -out "$TMP/server.csr" >/dev/null 2>&1 || fail "openssl: server request"
openssl x509 -req -days 1 -in "$TMP/server.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" \
  -CAcreateserial -extfile "$TMP/san.ext" -out "$TMP/server.pem" >/dev/null 2>&1 ||
  fail "openssl: signing the server certificate"

# ---- A TLS coordinator with both tokens, logging everything.
launch_coordinator "$TMP/port" "$TMP/coordinator.log" \
  "$bin/coordinator" --listen 127.0.0.1:0 --port-file "$TMP/port" "${common[@]}" --rank-timeout 0 \
  --token-file "$TMP/admin.token" --read-token-file "$TMP/read.token" \
  --tls-cert "$TMP/server.pem" --tls-key "$TMP/server.key" --log-level trace
expect_contains "$TMP/coordinator.log" "token file $TMP/admin.token has mode 0644"
expect_contains "$TMP/coordinator.log" "chmod 600 $TMP/admin.token"
grep -qF "token file $TMP/read.token has mode" "$TMP/coordinator.log" &&
  fail "warned about read.token, whose mode is 0600"

# ctl NAME ARGS...: coordctl at debug level; output in $TMP/NAME.out, exit code in $rc.
ctl() {
  local name=$1
  shift
  rc=0
  "$bin/coordctl" --coordinator "$address" --retry-for 1 --log-level debug "$@" \
    >"$TMP/$name.out" 2>&1 || rc=$?
}

ctl read-status --tls-ca "$TMP/ca.pem" --token-file "$TMP/read.token" --json status
[[ $rc -eq 0 ]] || { cat "$TMP/read-status.out"; fail "status over TLS with the read-only token"; }
expect_contains "$TMP/read-status.out" '"synthetic"'

ctl plaintext --token-file "$TMP/read.token" status
[[ $rc -eq 3 ]] || { cat "$TMP/plaintext.out"; fail "a plaintext client exited $rc, expected 3"; }
expect_contains "$TMP/plaintext.out" "UNAVAILABLE"

ctl other-ca --tls-ca "$TMP/other-ca.pem" --token-file "$TMP/read.token" status
[[ $rc -eq 3 ]] || { cat "$TMP/other-ca.out"; fail "a client trusting another CA exited $rc"; }
expect_contains "$TMP/other-ca.out" "UNAVAILABLE"

ctl no-token --tls-ca "$TMP/ca.pem" status
[[ $rc -eq 3 ]] || { cat "$TMP/no-token.out"; fail "no token exited $rc"; }
expect_contains "$TMP/no-token.out" "UNAUTHENTICATED"

ctl wrong-token --tls-ca "$TMP/ca.pem" --token-file "$TMP/wrong.token" status
[[ $rc -eq 3 ]] || { cat "$TMP/wrong-token.out"; fail "a wrong token exited $rc"; }
expect_contains "$TMP/wrong-token.out" "UNAUTHENTICATED"
expect_contains "$TMP/wrong-token.out" "unknown token"

ctl read-delete --tls-ca "$TMP/ca.pem" --token-file "$TMP/read.token" checkpoints delete some-id
[[ $rc -eq 3 ]] || { cat "$TMP/read-delete.out"; fail "delete with the read-only token exited $rc"; }
expect_contains "$TMP/read-delete.out" "PERMISSION_DENIED"
expect_contains "$TMP/read-delete.out" "Delete: the read-only token may not call this method"

# The admin token writes: a whole (fake) run with watchers and pollers.
"$bin/coordinator_load" --coordinator "localhost:$(cat "$TMP/port")" --tls-ca "$TMP/ca.pem" \
  --token-file "$TMP/admin.token" --run secure --feed-ranks 2 --feed-epochs 3 --feed-steps 2 \
  --watchers 2 --pollers 1 --stuck-watchers 1 --log-level trace >"$TMP/load.log" 2>&1 ||
  { cat "$TMP/load.log"; fail "coordinator_load with the admin token over TLS"; }
expect_contains "$TMP/load.log" '"errors": 0'
ctl metrics --tls-ca "$TMP/ca.pem" --token-file "$TMP/read.token" metrics secure --csv
[[ $rc -eq 0 ]] || { cat "$TMP/metrics.out"; fail "metrics of the fed run"; }
[[ $(grep -c '^load,' "$TMP/metrics.out") -eq 6 ]] || { cat "$TMP/metrics.out"; fail "expected 6 epochs"; }

stop_coordinator

# ---- No token in any log. The refusals above were logged (debug level is
# really on), naming the method and the peer only.
expect_contains "$TMP/coordinator.log" "auth: refused a call from"
expect_contains "$TMP/coordinator.log" "unknown token"
logs=("$TMP"/*.log "$TMP"/*.out)
for token in "$admin_token" "$read_token" "$wrong_token"; do
  if grep -lF -- "$token" "${logs[@]}"; then
    fail "a token appears in the logs above"
  fi
done
echo "coordinator security: ok"
