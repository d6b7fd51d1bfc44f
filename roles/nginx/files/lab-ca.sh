#!/bin/sh
# The lab's stand-in for ACME, in one call: a CA of its own (made once), the
# site key (made once), and the site certificate for the names of the openssl
# request read on stdin (site.cnf), signed again when those names changed.
# Folders and keys are kept to root. Prints one line for each thing it made
# or put right, nothing when all was in place (the task's "changed").
#   lab-ca.sh DIR ORGANISATION < site.cnf
set -eu
dir=$1 org=$2

# owner:group, mode as stat prints them, and the path
keep() {
    if [ "$(stat -c '%U:%G %a' "$3")" != "$1 $2" ]; then
        chown "$1" "$3"
        chmod "$2" "$3"
        echo "set $1 $2 on $3"
    fi
}

mkdir -p "$dir/private"
keep root:root 755 "$dir"
keep root:root 700 "$dir/private"
cd "$dir"

if [ ! -e ca.crt ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
        -keyout private/ca.key -out ca.crt -days 3650 \
        -subj "/O=$org/CN=SOP Lab CA (nginx)" \
        -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign
    echo "made the CA $dir/ca.crt"
fi
if [ ! -e private/site.key ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out private/site.key
    echo "made the site key"
fi
renew=no
cat > site.cnf.new
if cmp -s site.cnf.new site.cnf; then
    rm site.cnf.new
else
    chmod 644 site.cnf.new
    mv site.cnf.new site.cnf
    echo "wrote $dir/site.cnf (the names changed)"
    renew=yes
fi
if [ "$renew" = yes ] || [ ! -e site.crt ]; then
    openssl req -new -x509 -key private/site.key -CA ca.crt -CAkey private/ca.key \
        -days 825 -config site.cnf -out site.crt.new
    mv site.crt.new site.crt
    echo "signed $dir/site.crt for the names in site.cnf"
fi
