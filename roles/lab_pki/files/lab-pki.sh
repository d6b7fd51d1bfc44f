#!/bin/sh
# The lab's private CA and server certificates, each made once; directory
# and private keys kept to root. One call instead of a task per file.
# Prints one line for each thing it made or put right, nothing when all was
# in place (the task's "changed").
#   lab-pki.sh DIR KEY_BITS CA_DAYS CERT_DAYS CA_NAME NAME=DNS[,DNS...]...
set -eu
dir=$1 bits=$2 ca_days=$3 cert_days=$4 ca_name=$5
shift 5

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
    if [ ! -e "$dir/$name.crt" ]; then
        san=$(printf '%s' "$dns" | sed 's/[^,][^,]*/DNS:&/g')
        openssl req -x509 -newkey "rsa:$bits" -nodes -keyout "$dir/$name.key" \
            -out "$dir/$name.crt" -days "$cert_days" -subj "/CN=${dns%%,*}" \
            -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
            -addext "subjectAltName=$san" \
            -addext basicConstraints=critical,CA:FALSE \
            -addext keyUsage=critical,digitalSignature,keyEncipherment \
            -addext extendedKeyUsage=serverAuth
        chmod 644 "$dir/$name.crt"
        echo "made $dir/$name.crt for $dns"
    fi
    keep root:root 600 "$dir/$name.key"
done
