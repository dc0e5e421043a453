#!/usr/bin/env bash
# Regenerates lab/samples/{pmacct,goflow2}.jsonl and goflow2.pb with the real exporters and collectors:
# softflowd meters live loopback traffic (HTTP downloads and UDP datagrams made here) and exports
# NetFlow v9 to pmacct's nfacctd (print plugin, JSON: the same serialiser as its Kafka plugin)
# and to goflow2 (JSON to a file). Needs root (softflowd captures on lo), Debian's pmacct and
# softflowd, and goflow2 (`go install github.com/netsampler/goflow2/v2/cmd/goflow2@latest`).
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)/samples"
work="$(mktemp -d)"
pids=()
# Every daemon runs in its own session: stopping its process group also stops the children
# (nfacctd's plugins outlive their core process otherwise).
cleanup() {
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
goflow2="${GOFLOW2:-$(command -v goflow2 || echo "$HOME/go/bin/goflow2")}"
for tool in nfacctd softflowd softflowctl "$goflow2"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

cat >"$work/nfacctd.conf" <<EOF
daemonize: false
nfacctd_ip: 127.0.0.1
nfacctd_port: 21000
plugins: print[json]
print_output[json]: json
print_output_file[json]: $work/pmacct.json
print_output_file_append[json]: true
print_refresh_time[json]: 1
aggregate[json]: src_host, dst_host, src_port, dst_port, proto, tcpflags, peer_src_ip, in_iface, out_iface, timestamp_start, timestamp_end, sampling_rate
EOF
setsid nfacctd -f "$work/nfacctd.conf" >"$work/nfacctd.log" 2>&1 & pids+=($!)
setsid "$goflow2" -addr 127.0.0.1:18155 -listen "netflow://127.0.0.1:21055" -format json -transport file \
  -transport.file "$work/goflow2.json" >"$work/goflow2.log" 2>&1 & pids+=($!)
setsid "$goflow2" -addr 127.0.0.1:18157 -listen "netflow://127.0.0.1:21057" -format bin -transport file \
  -transport.file "$work/goflow2.bin" >"$work/goflow2-bin.log" 2>&1 & pids+=($!)
# Three exporters on lo, one per collector; all see the same packets.
setsid softflowd -d -i lo -v 9 -n 127.0.0.1:21000 -c "$work/sf1.ctl" -p "$work/sf1.pid" >"$work/sf1.log" 2>&1 & pids+=($!)
setsid softflowd -d -i lo -v 9 -n 127.0.0.1:21055 -c "$work/sf2.ctl" -p "$work/sf2.pid" >"$work/sf2.log" 2>&1 & pids+=($!)
setsid softflowd -d -i lo -v 9 -n 127.0.0.1:21057 -c "$work/sf3.ctl" -p "$work/sf3.pid" >"$work/sf3.log" 2>&1 & pids+=($!)
sleep 1

# Traffic: a few HTTP downloads of different sizes and some UDP datagrams.
mkdir -p "$work/www"
head -c 300000 /dev/urandom >"$work/www/big.bin"
head -c 2000 /dev/urandom >"$work/www/small.bin"
(cd "$work/www" && exec setsid python3 -m http.server 18080 --bind 127.0.0.1 >/dev/null 2>&1) & pids+=($!)
sleep 1
for i in $(seq 1 12); do
  python3 - "$i" <<'PY'
import socket, sys, urllib.request
i = int(sys.argv[1])
name = "big.bin" if i % 3 == 0 else "small.bin"
urllib.request.urlopen(f"http://127.0.0.1:18080/{name}").read()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5 + i):
    s.sendto(b"x" * (100 + 10 * i), ("127.0.0.1", 19999 + i))
PY
done
sleep 1
softflowctl -c "$work/sf1.ctl" expire-all >/dev/null
softflowctl -c "$work/sf2.ctl" expire-all >/dev/null
softflowctl -c "$work/sf3.ctl" expire-all >/dev/null
sleep 3

mkdir -p "$out"
# Keep only the flows of the generated traffic (not the exporters' own NetFlow datagrams).
python3 - "$work" "$out" <<'PY'
import json, sys
work, out = sys.argv[1], sys.argv[2]
collector_ports = {21000, 21055, 21057}

def copy(name, sport_key, dport_key):
    """Copy one collector's records, leaving out the exporters' own NetFlow datagrams."""
    n = 0
    with open(f"{work}/{name}.json") as f, open(f"{out}/{name}.jsonl", "w") as o:
        for line in f:
            r = json.loads(line)
            if r.get(sport_key) not in collector_ports and r.get(dport_key) not in collector_ports:
                o.write(json.dumps(r, separators=(",", ":")) + "\n")
                n += 1
    print(f"{name} records:", n)

copy("pmacct", "port_src", "port_dst")
copy("goflow2", "src_port", "dst_port")
PY
# goflow2's protobuf output, as it is: varint-length-delimited FlowMessages (the same bytes
# its Kafka transport sends, one message per Kafka record).
cp "$work/goflow2.bin" "$out/goflow2.pb"
echo "goflow2 protobuf bytes: $(wc -c <"$out/goflow2.pb")"
: <<'PY'
PY
