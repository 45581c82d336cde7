#!/usr/bin/env bash
# A local certificate authority, a certificate for each service, one for the edge client and one
# for the gateway, and access tokens (the edge client's, the gateway's own): `make certs` (into
# ./certs, git-ignored). Files that exist are kept, so running it again changes nothing (a folder
# made before the gateway had its own gets its certificate and token); delete it to start over.
#   deploy/certs.sh [DIR] [EXTRA_DNS_NAME...]
set -euo pipefail
dir=${1:-certs}
shift || true
mkdir -p "$dir"
cd "$dir"
umask 077

if [ ! -f ca.key ]; then
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
        -keyout ca.key -out ca.crt -days 3650 -subj "/CN=voice-agent local CA" 2>/dev/null
fi

for name in stt llm tts client gateway; do
    [ -f "$name.crt" ] && continue
    # Services answer by their compose name, their Kubernetes names and on this machine;
    # both usages let the healthcheck and mutual TLS use a service's own certificate.
    sans="DNS:$name,DNS:localhost,IP:127.0.0.1"
    for suffix in voice-agent voice-agent.svc voice-agent.svc.cluster.local; do
        sans="$sans,DNS:$name.$suffix,DNS:$name-headless.$suffix"
    done
    for extra in "$@"; do sans="$sans,DNS:$extra"; done
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' \
        "$sans" > "$name.ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
        -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 825 \
        -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
done

if [ ! -f token ]; then
    openssl rand -hex 24 > token
    printf 'edge:%s\n' "$(cat token)" > tokens
fi
# The gateway's own, so its calls count against its limits and not the edge client's.
if [ ! -f gateway-token ]; then
    openssl rand -hex 24 > gateway-token
    printf 'gateway:%s\n' "$(cat gateway-token)" >> tokens
fi
# Eight more, one per person (bench/load gives each conversation its own, as people would have).
if ! grep -q '^user-' tokens; then
    for i in 1 2 3 4 5 6 7 8; do printf 'user-%s:%s\n' "$i" "$(openssl rand -hex 24)" >> tokens; done
fi

# The SIP password of the phone profile's Asterisk (user "caller"): never a default one.
if [ ! -f sip-password ]; then
    openssl rand -hex 16 > sip-password
fi

# The containers run as uid 10001 and read these through bind mounts; the CA key stays private.
chmod 644 ca.crt ./*.crt ./*.key tokens token gateway-token sip-password
chmod 600 ca.key
echo "certificates, keys and access tokens in $(pwd)"
