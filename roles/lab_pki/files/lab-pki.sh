#!/bin/sh
# The lab's private CA and server certificates, each made once; directory
# and private keys kept to root. One call instead of a task per file.
# A server certificate missing or expiring within RENEW_DAYS is issued again
# with the key it had: the key stays (a DANE TLSA record of it stays right);
# only a missing key is made new.
# Prints one line for each thing it made or put right, nothing when all was
# in place (the task's "changed").
#   lab-pki.sh DIR KEY_BITS CA_DAYS CERT_DAYS RENEW_DAYS CA_NAME NAME=DNS[,DNS...]...
set -eu
dir=$1 bits=$2 ca_days=$3 cert_days=$4 renew_days=$5 ca_name=$6
shift 6

# owner, group and mode as stat prints them, and the path
keep() {
    want=$1 mode=$2 path=$3
    if [ "$(stat -c '%U:%G %a' "$path")" != "$want $mode" ]; then
        chown "$want" "$path"
        chmod "$mode" "$path"
        echo "set $want $mode on $path"
    fi
}

if [ ! -d "$dir" ]; then
    mkdir -p "$dir"
    echo "made $dir"
fi
keep root:root 755 "$dir"

umask 077
if [ ! -e "$dir/ca.crt" ]; then
    openssl req -x509 -newkey "rsa:$bits" -nodes -keyout "$dir/ca.key" -out "$dir/ca.crt" \
        -days "$ca_days" -subj "/CN=$ca_name" \
        -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign
    chmod 644 "$dir/ca.crt"
    echo "made the CA $dir/ca.crt"
fi
keep root:root 600 "$dir/ca.key"

for cert in "$@"; do
    name=${cert%%=*} dns=${cert#*=}
    crt=$dir/$name.crt key=$dir/$name.key
    if [ ! -e "$crt" ] || [ ! -s "$key" ] \
            || ! openssl x509 -in "$crt" -noout -checkend "$((renew_days * 86400))" >/dev/null; then
        made="issued $crt again for $dns, same key"
        if [ ! -s "$key" ]; then
            openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:$bits" -out "$key" 2>/dev/null
            made="made $crt for $dns, new key"
        fi
        san=$(printf '%s' "$dns" | sed 's/[^,][^,]*/DNS:&/g')
        openssl req -x509 -key "$key" -out "$crt.new" -days "$cert_days" -subj "/CN=${dns%%,*}" \
            -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
            -addext "subjectAltName=$san" \
            -addext basicConstraints=critical,CA:FALSE \
            -addext keyUsage=critical,digitalSignature,keyEncipherment \
            -addext extendedKeyUsage=serverAuth
        chmod 644 "$crt.new"
        mv "$crt.new" "$crt"
        echo "$made"
    fi
    keep root:root 600 "$dir/$name.key"
done
