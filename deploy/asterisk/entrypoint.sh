#!/bin/sh
# Render pjsip.conf with the SIP password of `make certs`, then run Asterisk in the foreground.
# There is no default password: without the file the container does not start.
set -eu
secret=/run/secrets/sip-password
if [ ! -s "$secret" ]; then
    echo "asterisk: no SIP password at $secret: run make certs (it writes certs/sip-password)" >&2
    exit 1
fi
password=$(tr -d '\n' < "$secret")
address=${ASTERISK_EXTERNAL_ADDRESS:-127.0.0.1}
sed -e "s|@PASSWORD@|$password|" -e "s|@ADDRESS@|$address|" /etc/asterisk/pjsip.conf.in > /etc/asterisk/pjsip.conf
: "${GATEWAY_AUDIOSOCKET:?set GATEWAY_AUDIOSOCKET to the gateway's AudioSocket host:port}"
exec asterisk -f -n
