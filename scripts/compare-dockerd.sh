#!/usr/bin/env bash
# compare-dockerd.sh: run the same docker CLI command sequences against a
# private dockerd (Debian's docker.io) and a private berthd, and print, per
# scenario, the differences in exit codes, standard output, standard error
# and the shape (keys and value types) of the JSON they answer.
#
# Usage (as root, from the repository, after `make build`):
#   scripts/compare-dockerd.sh [-o DIR] [-a API] [-l] [SCENARIO...]
#     -o DIR   keep each scenario's raw outputs in DIR (default: a new
#              /tmp/berth-compare-* directory, printed at the end)
#     -a API   pin the client's API version for both daemons (for example
#              1.41, dockerd 20.10's); by default the CLI negotiates
#     -l       list the scenarios and exit
#     SCENARIO run only these scenarios (default: all)
# Environment: BERTH_BIN (default ./bin: berthd and its helpers), DOCKER
# (default /usr/local/bin/docker), DOCKERD (default dockerd on PATH).
#
# Both daemons run with private data, exec roots, sockets, pidfiles and
# cgroup parents under one work directory; dockerd starts its own containerd
# there. On exit everything started is ended by PID, mounts under the work
# directory are detached, the cgroups of both parents removed, and the work
# directory deleted. Exit status: 0 when every scenario matched, 1 when some
# differ, 2 on a setup failure.
#
# Values that differ by nature (IDs, times, durations, sizes, private paths)
# are normalized before the comparison. Docker CLI 28 negotiates API 1.41 with
# dockerd 20.10 and a newer one with berthd, so a difference can also be a
# change of Docker's since 20.10: check moby's current behaviour before fixing.
set -u

DOCKER=${DOCKER:-/usr/local/bin/docker}
DOCKERD=${DOCKERD:-$(command -v dockerd || true)}
BERTH_BIN=${BERTH_BIN:-$PWD/bin}
IMG=berth-diff/busybox:latest
OUT=""
API=""
LIST=0

while getopts "o:a:lh" opt; do
	case $opt in
	o) OUT=$OPTARG ;;
	a) API=$OPTARG ;;
	l) LIST=1 ;;
	*) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
shift $((OPTIND - 1))

# ---------------------------------------------------------------- scenarios
# Each scenario is a function run once per daemon with the same commands. c
# runs and records a docker command; q runs one silently (setup); shape
# prints the JSON paths and value types of a command's output; api calls the
# Engine API directly; events prints the events of the scenario so far.

sc_inspect_states() {
	q create --network none --name created "$IMG" sleep 1000
	shape inspect created
	c inspect --format '{{json .State}}' created
	c inspect --format '{{.Path}} {{json .Args}} {{json .Config.Cmd}} {{json .Config.Entrypoint}} {{.Config.Hostname}} {{.RestartCount}} {{.Driver}} {{.Platform}}' created
	c inspect --format '{{json .HostConfig.RestartPolicy}} {{json .HostConfig.LogConfig}} {{.HostConfig.NetworkMode}} {{json .HostConfig.Binds}} {{json .Mounts}}' created
	c inspect --format '{{json .NetworkSettings.Networks}}' created
	q run -d --network none --name running "$IMG" sleep 1000
	shape inspect running
	c inspect --format '{{.State.Status}} {{.State.Running}} {{.State.Paused}} {{.State.ExitCode}} {{.State.Error}}' running
	q pause running
	shape inspect running
	c inspect --format '{{.State.Status}} {{.State.Running}} {{.State.Paused}}' running
	q unpause running
	q run --network none --name exited "$IMG" sh -c 'exit 3'
	shape inspect exited
	c inspect --format '{{.State.Status}} {{.State.Running}} {{.State.ExitCode}} {{.State.Pid}} {{.State.OOMKilled}} {{.State.Dead}}' exited
	c inspect nosuch
	c inspect --type volume created
	c container inspect nosuch created --format '{{.Name}}'
}

sc_volume_inspect() {
	c volume create v1
	c volume create --label a=b --opt type=tmpfs --opt device=tmpfs v2
	shape volume inspect v1
	c volume inspect --format '{{.Name}} {{.Driver}} {{.Scope}} {{json .Labels}} {{json .Options}}' v1 v2
	c volume inspect nosuch
	c volume create v1
	c volume create --driver nosuch v3
	c volume create 'bad/name'
}

sc_exec_inspect() {
	q run -d --network none --name e1 "$IMG" sleep 1000
	local id
	id=$(api POST /containers/e1/exec '{"Cmd":["sh","-c","exit 4"],"AttachStdout":true}' | jq -r .Id)
	echo "exec create: ${id:+an id}"
	api GET "/exec/$id/json" | shapeof
	api GET "/exec/$id/json" | jq -c '{Running,ExitCode,Pid,OpenStdin,OpenStdout,OpenStderr,ProcessConfig,CanRemove,DetachKeys}'
	api POST "/exec/$id/start" '{"Detach":true}' >/dev/null
	sleep 1
	api GET "/exec/$id/json" | jq -c '{Running,ExitCode,OpenStdout}'
	api GET /exec/nosuch/json
	echo
	c exec e1 sh -c 'exit 5'
	c exec -u nosuchuser e1 true
	c exec -w /nonexistent e1 pwd
	c exec e1 /no/such/command
	c exec nosuch true
}

sc_ps() {
	q create --network none --name created "$IMG" true
	q run -d --network none --name running --label k=v "$IMG" sleep 1000
	q run --network none --name exited "$IMG" sh -c 'exit 2'
	c ps
	c ps -a
	c ps -a --no-trunc --format '{{.Names}} {{.Command}} {{.Status}} {{.Ports}} {{.Labels}} {{.Mounts}} {{.Networks}} {{.State}}'
	psjson=$(run ps -a --format '{{json .}}')
	echo "$psjson" | shapeof
	echo "$psjson" | jq -c 'del(.CreatedAt,.RunningFor,.ID)' | sort
	c ps -a --filter status=exited --format '{{.Names}}'
	c ps -a --filter exited=2 --format '{{.Names}}'
	c ps --filter status=bogus
	c ps --filter bogus=1
	c container ls --size --format '{{.Names}} {{.Size}}'
	c ps -q -a --filter name=running
}

sc_events() {
	sleep 1
	local t0 t1
	t0=$(date +%s)
	q run -d --network none --name ev1 "$IMG" sleep 1000
	q stop -t 1 ev1
	q rm ev1
	q volume create evv
	q volume rm evv
	sleep 1
	t1=$(($(date +%s) + 1))
	run events --since "$t0" --until "$t1" --format '{{json .}}' | shapeof
	run events --since "$t0" --until "$t1" --format '{{.Type}} {{.Action}} {{json .Actor.Attributes}}' | sed 's/"exitCode":"[0-9]*"/"exitCode":"N"/'
	c events --since "$t0" --until "$t1" --filter event=die --format '{{.Status}} {{.From}} {{.Actor.Attributes.name}}'
	c events --since "$t0" --until "$t1" --filter type=bogus
}

sc_logs() {
	q run --network none --name l1 "$IMG" sh -c 'echo out1; echo err1 >&2; echo out2; echo err2 >&2; printf nonl'
	c logs l1
	c logs --tail 2 l1
	c logs --tail 0 l1
	c logs --tail bogus l1
	c logs -t l1
	c logs --details l1
	c logs --since 2000-01-01T00:00:00Z --until 2000-01-02T00:00:00Z l1
	c logs --since bogus l1
	c logs nosuch
	c logs -f l1
	q create --network none --name l2 "$IMG" true
	c logs l2
	q run --network none --name l3 --log-driver none "$IMG" echo hi
	c logs l3
}

sc_wait() {
	q run --network none --name w1 "$IMG" sh -c 'exit 7'
	c wait w1
	c wait nosuch
	c wait w1 nosuch
	q create --network none --name w2 "$IMG" true
	q start w2
	c wait w2
}

sc_stop_kill() {
	q run -d --network none --name s1 "$IMG" sh -c 'trap "exit 3" TERM; while :; do sleep 0.1; done'
	c stop -t 5 s1
	c inspect --format '{{.State.ExitCode}}' s1
	c stop s1
	q run -d --network none --name s2 "$IMG" sleep 1000
	c stop -t 1 s2
	c inspect --format '{{.State.ExitCode}}' s2
	c stop nosuch
	c stop -s bogus s2
	q run -d --network none --name k1 "$IMG" sh -c 'trap "exit 11" USR1; while :; do sleep 0.1; done'
	c kill -s USR1 k1
	c wait k1
	c kill k1
	c kill -s BOGUS k1
	q start k1
	c kill -s BOGUS k1
	c kill -s 0 k1
	c kill -s SIGKILL k1
	c wait k1
	c kill nosuch
	c restart -t 1 nosuch
	q run -d --network none --name p1 "$IMG" sleep 1000
	q pause p1
	c stop -t 1 p1
	c inspect --format '{{.State.Status}} {{.State.ExitCode}}' p1
}

sc_rm() {
	q run -d --network none --name r1 "$IMG" sleep 1000
	c rm r1
	c rm nosuch
	c rm -f nosuch
	c rm r1 nosuch
	c rm -f r1
	q run -d --network none --name r2 "$IMG" sleep 1000
	q pause r2
	c rm r2
	c rm -f r2
	q create --network none --name r3 -v /anon "$IMG" true
	c rm -v r3
	c volume ls -q
	c rm
}

sc_create_errors() {
	c create --network none localhost:1/nosuch:latest
	c create --network none --pull never nosuchimage:latest
	c create --network none -v a:b:c:d "$IMG"
	c create --network none -v /x:relative "$IMG"
	c create --network none -v :/x "$IMG"
	c create --network none --restart bogus "$IMG"
	c create --network none --restart always:3 "$IMG"
	c create --network none --restart on-failure:-1 "$IMG"
	c create --network none --memory 1k "$IMG"
	c create --network none --memory bogus "$IMG"
	c create --network none --memory 8m --memory-swap 4m "$IMG"
	c create --network none --cpus -1 "$IMG"
	c create --network none --cpu-shares -5 "$IMG"
	q create --network none --name dup "$IMG"
	c create --network none --name dup "$IMG"
	c create --network none --name 'bad name' "$IMG"
	c create --network none --mount type=bind,source=/nonexistent-berth-diff,target=/x "$IMG"
	c create --network none --mount type=bogus,target=/x "$IMG"
	c create --network none --mount type=volume,target=relative "$IMG"
	c create --network none --mount type=bind,target=/x "$IMG"
	c create --network none --tmpfs relative "$IMG"
	c create --network none --device /nonexistent-berth-diff "$IMG"
	c create --network none --ulimit nofile=bogus "$IMG"
	c create --network none --sysctl kernel.bogus=1 "$IMG"
	c create --network none --cap-add BOGUS "$IMG"
	c create --network none --security-opt bogus "$IMG"
	c create --network none --user 'a:b:c' "$IMG"
	c create --network bogusnet "$IMG"
	c create --network none --stop-signal BOGUS "$IMG"
	c create --network none --runtime bogus "$IMG"
	c create --network none --log-driver bogus "$IMG"
	c create --network none --health-interval 1ms --health-cmd true "$IMG"
	c create --network none --workdir relative "$IMG"
	c create --network none --pids-limit -2 "$IMG"
	c run --network none --rm "$IMG" /no/such/command
	c run --network none --rm "$IMG" /etc
	c run --network none --rm -w /etc/passwd "$IMG" true
	c run --network none --rm -u nosuchuser "$IMG" true
	c run --network none --rm -v /etc/passwd:/etc "$IMG" true
}

sc_exec_stopped() {
	q create --network none --name x1 "$IMG" sleep 1000
	c exec x1 true
	q run --network none --name x2 "$IMG" true
	c exec x2 true
	q run -d --network none --name x3 "$IMG" sleep 1000
	q pause x3
	c exec x3 true
	c exec -d x2 true
}

sc_cp() {
	q run --network none --name cp1 "$IMG" sh -c 'echo hi >/f; mkdir /d'
	c cp cp1:/nonexistent "$WDIR/out"
	c cp nosuch:/f "$WDIR/out"
	c cp "$WDIR/nonexistent" cp1:/
	c cp cp1:/f "$WDIR/out"
	c cp cp1:/f -
	echo x >"$WDIR/in"
	c cp "$WDIR/in" cp1:/nonexistent-dir/
	c cp "$WDIR/in" cp1:/f/
	c cp cp1:/d "$WDIR/in"
	c cp "$WDIR/in" cp1:/proc/
	c cp "$WDIR/in" "$WDIR/in2"
}

sc_rename() {
	q create --network none --name a1 "$IMG"
	q create --network none --name b1 "$IMG"
	c rename a1 b1
	c rename nosuch z
	c rename a1 a1
	c rename a1 'bad name'
	c rename a1 a2
	c inspect --format '{{.Name}}' a2
	c rename a2 ''
}

sc_update() {
	q create --network none --name u1 "$IMG" sleep 1000
	c update --memory 32m u1
	c inspect --format '{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}' u1
	c update --memory 64m --memory-swap 32m u1
	c update --restart always u1
	c update --restart on-failure:3 u1
	c inspect --format '{{json .HostConfig.RestartPolicy}}' u1
	c update --cpus 0.5 u1
	c update --memory 1k u1
	c update --kernel-memory 10m u1
	c update nosuch
	c update u1
	q run --network none --name u2 "$IMG" true
	c update --memory 16m u2
	q run -d --network none --name u3 --memory 32m "$IMG" sleep 1000
	c update --memory 16m u3
	c update --pids-limit 5 u3
	c inspect --format '{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}' u3
}

sc_prune() {
	q create --network none --name pr1 "$IMG"
	q run --network none --name pr2 "$IMG" true
	q run -d --network none --name pr3 "$IMG" sleep 1000
	c container prune -f
	c ps -a --format '{{.Names}}'
	c container prune -f --filter until=1h
	c container prune -f --filter label=nosuch
	c container prune -f --filter bogus=1
}

sc_volumes() {
	q volume create vv1
	q volume create --label keep=1 vv2
	q run --network none --name vc -v vv1:/data -v /anon "$IMG" true
	c volume ls --format '{{.Driver}} {{.Name}} {{.Scope}} {{.Labels}} {{.Mountpoint}}'
	run volume ls --format '{{json .}}' | shapeof
	c volume ls --filter dangling=true --format '{{.Name}}'
	c volume ls --filter dangling=false --format '{{.Name}}'
	c volume ls --filter label=keep --format '{{.Name}}'
	c volume ls --filter bogus=1
	c volume rm vv1
	c volume rm nosuch
	c volume rm -f nosuch
	c volume rm vv2 nosuch
	c volume prune -f
	c volume prune -a -f
	q rm -v vc
	c volume prune -a -f --filter label=nosuch
	c volume prune -a -f
	c volume ls -q
}

sc_system() {
	q run --network none --name sd1 -v sdv:/data "$IMG" sh -c 'echo data >/data/f; echo x >/f'
	q run -d --network none --name sd2 "$IMG" sleep 1000
	c system df --format '{{.Type}} {{.TotalCount}} {{.Active}}'
	run system df --format '{{json .}}' | shapeof
	c system df -v --format '{{json .}}'
	c system prune -f
	c ps -a --format '{{.Names}}'
	c volume ls -q
	c system prune -f --volumes
	c volume ls -q
	c image ls --format '{{.Repository}}:{{.Tag}}'
}

sc_top_port_stats() {
	q run -d --network none --name t1 "$IMG" sleep 1000
	c top t1
	c top t1 -o pid,args
	c top t1 bogusopt
	q create --network none --name t2 "$IMG" sleep 1000
	c top t2
	c top nosuch
	c port t1
	c port t1 80
	c port t1 80/bogus
	c port nosuch
	run stats --no-stream --format '{{json .}}' t1 | shapeof
	run stats --no-stream --format '{{.Name}} {{.PIDs}}' t1
	echo
	c stats --no-stream --format '{{.Name}}' t2
	c stats --no-stream nosuch
	q pause t1
	c top t1
	q unpause t1
}

sc_diff() {
	q run --network none --name df1 "$IMG" sh -c 'echo x >/newfile; rm /bin/ls; echo y >>/etc/passwd; mkdir -p /a/b; touch /a/b/c; rm -rf /home'
	c diff df1
	q create --network none --name df2 "$IMG"
	c diff df2
	c diff nosuch
	q run --network none --name df3 -v /vol --tmpfs /tm "$IMG" sh -c 'echo x >/vol/f; echo y>/tm/f'
	c diff df3
}

sc_run_misc() {
	c run --network none --rm "$IMG" sh -c 'echo out; echo err >&2; exit 9'
	c run --network none --rm -e A=1 --env B "$IMG" sh -c 'echo $A ${B-unset}; hostname | wc -c; cat /etc/hostname | wc -c'
	c run --network none --rm "$IMG" sh -c 'ls /dev; cat /proc/self/status | grep -E "^(Cap|Seccomp|NoNewPrivs)"'
	c run --network none --rm "$IMG" sh -c 'cat /etc/hosts /etc/resolv.conf | grep -v "^#" | grep -v "^$" | sed "s/[0-9a-f]\{12\}/ID/"'
	c run --network none --rm "$IMG" sh -c 'mount | grep -E " on /(proc|sys|dev|etc)" | cut -d" " -f3-  | sort'
	c run --network none --rm "$IMG" sh -c 'ulimit -a'
	c run --network none --rm --read-only "$IMG" sh -c 'touch /x; touch /tmp/x; touch /dev/shm/x'
	c run --network none --name same "$IMG" true
	c run --network none --name same "$IMG" true
	c start same nosuch
	c start -a same
	c restart -t 1 same
	c inspect --format '{{.State.Status}}' same
	c attach same
	c pause same
	c unpause same
	c export nosuch
	c commit nosuch
}

sc_info_version() {
	run info --format '{{json .}}' | shapeof | grep -v -E '^(Plugins|RegistryConfig|Swarm|Runtimes|Warnings|ContainerdCommit|RuncCommit|InitCommit|SecurityOptions|DriverStatus|SystemStatus|GenericResources|Labels|DefaultAddressPools|CDISpecDirs|Containerd|FirewallBackend)'
	c info --format '{{.Containers}} {{.ContainersRunning}} {{.Images}} {{.OSType}} {{.Architecture}} {{.CgroupDriver}} {{.CgroupVersion}} {{.LoggingDriver}} {{.DefaultRuntime}}'
	run version --format '{{json .Server}}' | shapeof | grep -v -E '^(Components|Platform|KernelVersion)'
}

sc_images() {
	shape image inspect "$IMG"
	c image inspect --format '{{.Os}} {{.Architecture}} {{json .Config.Cmd}} {{json .RepoTags}} {{.Config.WorkingDir}} {{json .Config.Env}}' "$IMG"
	c images --format '{{.Repository}} {{.Tag}} {{.Containers}}'
	c history --format '{{.CreatedBy}}' "$IMG"
	c image inspect nosuch
	c rmi nosuch
	q create --network none --name im1 "$IMG"
	c rmi "$IMG"
	q tag "$IMG" berth-diff/other:1
	c rmi berth-diff/other:1
	q run --network none --name cm1 "$IMG" sh -c 'echo x >/committed'
	c commit -m msg -c 'ENV A=1' cm1 berth-diff/committed:1
	c image inspect --format '{{json .Config.Env}} {{.Comment}} {{json .Config.Cmd}}' berth-diff/committed:1
	c run --network none --rm berth-diff/committed:1 cat /committed
	q rm -f cm1
	c rmi berth-diff/committed:1
}

sc_health() {
	q run -d --network none --name h1 --health-cmd 'exit 0' --health-interval 1s "$IMG" sleep 1000
	q run -d --network none --name h2 --health-cmd 'exit 1' --health-interval 1s --health-retries 1 "$IMG" sleep 1000
	sleep 4
	c inspect --format '{{.State.Health.Status}} {{.State.Health.FailingStreak}} {{(index .State.Health.Log 0).ExitCode}}' h1 h2
	run inspect --format '{{json .State.Health}}' h1 | shapeof
	c ps --format '{{.Names}} {{.Status}}' --filter health=unhealthy
	c ps --format '{{.Names}}' --filter health=healthy
	run inspect --format '{{json .Config.Healthcheck}}' h2
	echo
}

sc_lifecycle() {
	c run --network none --name lc1 "$IMG" sh -c 'echo hi; exit 3'
	c start -a lc1
	c start lc1
	c wait lc1
	c restart -t 0 lc1
	c wait lc1
	c inspect --format '{{.RestartCount}} {{.State.ExitCode}}' lc1
	c run -d --network none --name lc2 --restart on-failure:2 "$IMG" sh -c 'exit 1'
	sleep 4
	c inspect --format '{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}' lc2
	c run --network none --rm --init "$IMG" sh -c 'echo $$'
	c run --network none --rm -e A=1 --name rmx "$IMG" sh -c 'exit 0'
	c inspect rmx
	c run --network none --rm -w /newdir "$IMG" pwd
	c run --network none --rm -u 1234:5678 "$IMG" id
	c run --network none --rm -u nobody "$IMG" id
	c run --network none --rm --hostname myhost "$IMG" hostname
	c run --network none --rm --entrypoint echo "$IMG" hi there
	c run --network none --rm --entrypoint '' "$IMG" echo empty-entrypoint
	c run --network none --rm --read-only --tmpfs /tmp "$IMG" sh -c 'touch /tmp/ok && echo ok'
	c create --network none --name lc3 "$IMG" true
	c stop lc3
	c kill lc3
	c stats --no-stream --format '{{.Name}} {{.MemUsage}}' lc3
	c export lc3 -o "$WDIR/exp.tar"
	tar -tf "$WDIR/exp.tar" | sort | head -20
}

SCENARIOS=(info_version images health lifecycle inspect_states volume_inspect exec_inspect ps events logs wait stop_kill rm create_errors exec_stopped cp rename update prune volumes system top_port_stats diff run_misc)

if [ "$LIST" = 1 ]; then
	printf '%s\n' "${SCENARIOS[@]}"
	exit 0
fi
if [ $# -gt 0 ]; then
	for s in "$@"; do
		declare -F "sc_$s" >/dev/null || { echo "no scenario $s (-l lists them)" >&2; exit 2; }
	done
	SCENARIOS=("$@")
fi

# ---------------------------------------------------------------- helpers

# run: the docker CLI against the current daemon ($TARGET).
run() {
	env DOCKER_HOST="unix://$SOCK" DOCKER_CONTEXT= DOCKER_CONFIG="$WORK/client-$TARGET" DOCKER_CLI_HINTS=false \
		${API:+DOCKER_API_VERSION=$API} timeout 60 "$DOCKER" "$@"
}

# c: run and record a command: its line, stdout, stderr (prefixed "! ")
# and exit status.
c() {
	echo "\$ docker $*"
	run "$@" 2>"$WDIR/stderr" </dev/null
	local rc=$?
	sed 's/^/! /' "$WDIR/stderr"
	echo "-> exit $rc"
}

# q: setup; only a failure is recorded.
q() {
	run "$@" >/dev/null 2>"$WDIR/stderr" </dev/null
	# A container exiting non-zero is no setup failure; an error message is.
	[ -s "$WDIR/stderr" ] && { echo "(setup: docker $*)"; sed 's/^/! /' "$WDIR/stderr"; }
	return 0
}

# shapeof: the paths of a JSON document (or one per line) with the type of
# each value; array indexes are folded.
shapeof() {
	jq -r 'paths as $p | "\($p | map(if type == "number" then "[]" else tostring end) | join(".")): \(getpath($p) | type)"' 2>&1 | sort -u
}

shape() {
	echo "\$ docker $* | shape"
	run "$@" 2>&1 | jq '.[0]' 2>&1 | shapeof
}

# api: an Engine API call on the current daemon, printing the body; a
# status >= 400 is printed too.
api() {
	local method=$1 path=$2 body=${3:-}
	local v=${API:-1.41}
	if [ -n "$body" ]; then
		curl -s --unix-socket "$SOCK" -X "$method" -H 'Content-Type: application/json' -d "$body" -w '\n%{http_code}' "http://d/v$v$path"
	else
		curl -s --unix-socket "$SOCK" -X "$method" -w '\n%{http_code}' "http://d/v$v$path"
	fi | awk 'NR > 1 { print prev } { prev = $0 } END { if (prev >= 400) print "HTTP " prev }'
}

# normalize: replace what differs by nature between two daemons.
normalize() {
	sed -E \
		-e "s#$WORK/(docker|berth)/data#<DATA>#g" \
		-e "s#$WORK/(docker|berth)#<ROOT>#g" \
		-e "s#$WORK/out-(docker|berth)#<WDIR>#g" \
		-e 's/sha256:[0-9a-f]{64}/<DIGEST>/g' \
		-e 's/[0-9a-f]{64}/<ID>/g' \
		-e 's/\b[0-9a-f]{12}\b/<ID12>/g' \
		-e 's/[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?( ?(Z|[+-][0-9]{2}:?[0-9]{2}))?( [A-Z]{3,4})?/<TIME>/g' \
		-e 's/(Up|Exited \([0-9-]+\)|Created|Paused) (Less than a second|About a minute|About an hour|[0-9]+ (seconds?|minutes?|hours?))( ago)?/\1 <DUR>\4/g' \
		-e 's/(Less than a second|About a minute|[0-9]+ (seconds?|minutes?|hours?)) ago/<AGO>/g' \
		-e 's/"(time|timeNano|Created|Pid|Size|SizeRw|SizeRootFs|VirtualSize|RefCount|Id)":[0-9]+/"\1":<N>/g' \
		-e 's/\b[0-9]+(\.[0-9]+)?([kKMG]i?)?B\b/<SIZE>/g' \
		-e 's/\b[0-9]+(\.[0-9]+)?%/<PCT>/g' \
		-e 's/\b(pid|PID|Pid) [0-9]+/\1 <N>/g' \
		-e 's/^(root|UID) +[0-9A-Z]+ +[0-9A-Z]+ +[0-9A-Z]+ /\1 PID PPID C /' \
		-e 's/^[0-9]+( +)(sleep|COMMAND)/PID\1\2/'
}

# ---------------------------------------------------------------- daemons

[ "$(id -u)" = 0 ] || { echo "compare-dockerd.sh: run as root" >&2; exit 2; }
for b in "$DOCKER" "$DOCKERD" "$BERTH_BIN/berthd" "$(command -v containerd)" "$(command -v jq)" "$(command -v curl)"; do
	[ -n "$b" ] && [ -x "$b" ] || { echo "compare-dockerd.sh: missing binary ${b:-dockerd/containerd/jq/curl} (apt-get install docker.io jq curl; make build)" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/berth-cmp-XXXXXX)
TAG=${WORK##*-}
[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/berth-compare-XXXXXX)
mkdir -p "$OUT"
declare -A PIDS CGPARENT
CGPARENT[docker]=berth-cmp-docker-$TAG
CGPARENT[berth]=berth-cmp-berth-$TAG
# dockerd and its containerd use these host paths whatever they are told;
# the ones that did not exist are removed again (when empty).
HOSTDIRS=()
for p in /run/docker /run/docker/plugins /run/containerd /run/containerd/s; do
	[ -e "$p" ] || HOSTDIRS+=("$p")
done

# kill_under: SIGKILL every process whose command line names the work
# directory (shims, containerd, leftovers).
kill_under() {
	local p
	for p in /proc/[0-9]*; do
		[ "${p#/proc/}" = "$$" ] && continue
		if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF "$WORK"; then
			kill -KILL "${p#/proc/}" 2>/dev/null && echo "cleanup: killed ${p#/proc/}" >&2
		fi
	done
}

remove_cgroups() {
	local parent=$1 root d pid
	for root in /sys/fs/cgroup/* /sys/fs/cgroup; do
		[ -d "$root/$parent" ] || continue
		# Deepest first.
		find "$root/$parent" -depth -type d 2>/dev/null | while read -r d; do
			if [ -s "$d/cgroup.procs" ]; then
				[ -e "$d/freezer.state" ] && echo THAWED >"$d/freezer.state" 2>/dev/null
				for pid in $(cat "$d/cgroup.procs"); do kill -KILL "$pid" 2>/dev/null; done
				sleep 0.2
			fi
			rmdir "$d" 2>/dev/null || { sleep 0.3; rmdir "$d" 2>/dev/null; } || echo "cleanup: cannot remove cgroup $d" >&2
		done
	done
}

cleanup() {
	local t pid i
	trap - EXIT INT TERM
	for t in docker berth; do
		pid=${PIDS[$t]:-}
		[ -n "$pid" ] || continue
		if kill -0 "$pid" 2>/dev/null; then
			TARGET=$t SOCK=$WORK/$t/d.sock
			ids=$(run ps -aq 2>/dev/null)
			[ -n "$ids" ] && run rm -f $ids >/dev/null 2>&1
			kill -TERM "$pid"
			for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
			kill -0 "$pid" 2>/dev/null && { echo "cleanup: $t daemon $pid ignored SIGTERM; killing it" >&2; kill -KILL "$pid"; }
			wait "$pid" 2>/dev/null
		fi
	done
	kill_under
	# Detach every mount under the work directory, deepest first.
	awk -v w="$WORK" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo |
		awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2- | while read -r m; do
		umount -l "$(printf '%b' "$m")" 2>/dev/null
	done
	# dockerd 20.10 keeps --network none namespaces under /run/docker/netns.
	if [ -d /run/docker/netns ] && [[ " ${HOSTDIRS[*]} " == *" /run/docker "* ]]; then
		for m in /run/docker/netns/*; do [ -e "$m" ] && umount -l "$m" 2>/dev/null; rm -f "$m"; done
		rmdir /run/docker/netns 2>/dev/null
	fi
	for t in docker berth; do remove_cgroups "${CGPARENT[$t]}"; done
	for ((i = ${#HOSTDIRS[@]} - 1; i >= 0; i--)); do rmdir "${HOSTDIRS[$i]}" 2>/dev/null; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

start_daemon() {
	local t=$1
	shift
	mkdir -p "$WORK/$t" "$WORK/client-$t" "$WORK/out-$t"
	echo "=== start: $*" >"$WORK/$t/daemon.log"
	"$@" >>"$WORK/$t/daemon.log" 2>&1 &
	PIDS[$t]=$!
	TARGET=$t SOCK=$WORK/$t/d.sock
	for i in $(seq 300); do
		run version >/dev/null 2>&1 && return 0
		kill -0 "${PIDS[$t]}" 2>/dev/null || break
		sleep 0.2
	done
	echo "compare-dockerd.sh: $t did not answer; its log:" >&2
	tail -30 "$WORK/$t/daemon.log" >&2
	exit 2
}

mkdir -p "$WORK/docker"
printf '{"deprecated-key-path": "%s"}\n' "$WORK/docker/key.json" >"$WORK/docker/daemon.json"
start_daemon docker "$DOCKERD" --data-root "$WORK/docker/data" --exec-root "$WORK/docker/exec" \
	--pidfile "$WORK/docker/dockerd.pid" --config-file "$WORK/docker/daemon.json" -H "unix://$WORK/docker/d.sock" \
	--bridge none --iptables=false --ip6tables=false --ip-masq=false --userland-proxy=false \
	--storage-driver overlay2 --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent "/${CGPARENT[docker]}"
start_daemon berth "$BERTH_BIN/berthd" --data-root "$WORK/berth/data" --exec-root "$WORK/berth/exec" \
	--pidfile "$WORK/berth/berthd.pid" -H "unix://$WORK/berth/d.sock" --cgroup-parent "/${CGPARENT[berth]}"

# The same busybox image in both.
if ! (cd "$(dirname "$0")/.." && go run ./bench/run image -o "$WORK/busybox.tar" -tag "$IMG") >"$WORK/image.log" 2>&1; then
	echo "compare-dockerd.sh: building the busybox archive failed:" >&2
	cat "$WORK/image.log" >&2
	exit 2
fi
for t in docker berth; do
	TARGET=$t SOCK=$WORK/$t/d.sock
	run load -i "$WORK/busybox.tar" >/dev/null || { echo "compare-dockerd.sh: docker load into $t failed" >&2; exit 2; }
	echo "$t: $(run version --format '{{.Server.Version}} API {{.Server.APIVersion}}')"
done

# ---------------------------------------------------------------- compare

run_scenario() {
	local s=$1 t=$2
	TARGET=$t SOCK=$WORK/$t/d.sock WDIR=$WORK/out-$t
	rm -rf "$WDIR" && mkdir -p "$WDIR"
	"sc_$s" >"$OUT/$s.$t.raw" 2>&1
	# Leave the daemon clean for the next scenario.
	ids=$(run ps -aq)
	[ -n "$ids" ] && run rm -f -v $ids >/dev/null 2>&1
	vols=$(run volume ls -q)
	[ -n "$vols" ] && run volume rm -f $vols >/dev/null 2>&1
	normalize <"$OUT/$s.$t.raw" >"$OUT/$s.$t" || { echo "compare-dockerd.sh: normalizing $s failed" >&2; exit 2; }
}

differ=0
for s in "${SCENARIOS[@]}"; do
	run_scenario "$s" docker &
	p1=$!
	run_scenario "$s" berth &
	p2=$!
	wait $p1 $p2
	if diff -q "$OUT/$s.docker" "$OUT/$s.berth" >/dev/null; then
		echo "=== $s: same"
	else
		differ=1
		echo "=== $s: differs (- dockerd, + berthd)"
		diff -u --label dockerd --label berthd "$OUT/$s.docker" "$OUT/$s.berth" | tail -n +3
	fi
done
echo "outputs (raw and normalized) in $OUT"
exit $differ
