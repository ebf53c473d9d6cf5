# Sourced by the bench/server scripts. grpc_port LOG: waits up to 120 s for
# rectifier-server's "serving gRPC on port N" line in LOG and prints N; exits
# the script with the log when the server does not come up.
grpc_port() {
  local log=$1 port=""
  for _ in $(seq 1200); do
    port=$(grep -o 'serving gRPC on port [0-9]*' "$log" | grep -o '[0-9]*$' || true)
    if [ -n "$port" ]; then
      echo "$port"
      return 0
    fi
    sleep 0.1
  done
  echo "server did not start: $(cat "$log")" >&2
  exit 1
}
