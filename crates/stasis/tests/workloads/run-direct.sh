#!/bin/bash
# Validate the workloads themselves, without stasis: compile each one, run
# it, wait for READY, release it (go file / flag byte), expect PASS.
# All checks must hold when no checkpoint happens in between.
# (The Rust harness does the same with STASIS_TEST_DIRECT=1 cargo test.)
# usage: tests/workloads/run-direct.sh        (as root)
set -u
src=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d /tmp/stasis-direct-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0 pass=0

cases=(
  "basic" "basic exit=7" "mem_heap" "mem_anon" "mem_layout" "mem_sparse"
  "ldt" "numa_policy" "memfd_future_write" "mem_madvise" "mem_lock_future" "mem_lock_future onfault" "mem_file" "vdso" "proc_identity a_b" "regs syscall" "regs busy"
  "threads" "threads 59" "sleep nanosleep 2" "sleep raw 2" "sleep abs 2"
  "blocking read" "blocking poll" "blocking select" "blocking epoll"
  "blocking sigsuspend" "sig_handlers" "sig_pending" "itimers" "posix_timer"
  "mem_many" "robust" "attrs_basic" "attrs_creds" "files_regular" "files_unlinked"
  "files_unlinked map" "files_pipe" "files_pipe eof" "sock tcp" "sock unix" "sock udp"
  "fds_misc eventfd" "fds_misc signalfd" "fds_misc timerfd" "fds_misc inotify"
  "fds_misc memfd" "fds_misc flock" "fds_misc posixlock" "fds_misc fifo"
  "fds_misc epoll" "fds_misc epoll_closed" "inet opts" "inet v6" "inet shutrd"
  "inet synsent" "inet mcast" "inet urgent" "inet timewait" "inet md5" "inet synblock" "inet udpq" "inet halfpair"
  "inet udpwild"
  "tree" "tree_pipeline" "tree_prefork"
  "tree_zombies" "tree_shared" "tree_cow" "mem_shared_tree" "mem_vmflags" "mem_special pasteof"
  "mem_special devzero" "mem_special guard" "fifo" "thread_state" "exec_vdso" "pipe_async"
  "pipe_async direct" "fown" "tty_pty" "ghosts all" "proc_files pipe2" "proc_files procself"
  "proc_files hardlink2" "proc_files byname"
  "leader_exit" "leader_exit pthread" "leader_exit child" "zombie_leader"
)

for c in "${cases[@]}"; do
  set -- $c
  name=$1; shift
  bin="$tmp/bin/$name"
  if [ ! -x "$bin" ]; then
    mkdir -p "$tmp/bin"
    cc -O1 -pthread -Wall -g -I "$src" -o "$bin" "$src/$name.c" -lrt || { echo "COMPILE FAIL $name"; fail=$((fail+1)); continue; }
  fi
  wd="$tmp/wd-$name-$#-${1:-}"; mkdir -p "$wd"
  want=0; [ "${1:-}" = "exit=7" ] && want=7
  # its last thread ends with SYS_exit(9): the process's status
  [ "$name" = leader_exit ] && want=9
  # only fds 0, 1, 2 for the workload, like the harness
  python3 -c 'import os, sys; os.closerange(3, 1 << 20); os.execv(sys.argv[1], sys.argv[1:])' \
    "$bin" "$wd" "$@" </dev/null >"$wd/out" 2>"$wd/err" &
  pid=$!
  for _ in $(seq 3000); do grep -qx READY "$wd/out" 2>/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 0.01; done
  if [ "$name $*" = "regs busy" ]; then
    sleep 0.2; printf '\001' | dd of="$wd/flag" conv=notrunc status=none
  else
    touch "$wd/go"
  fi
  # give it 30 s, then kill it
  for _ in $(seq 3000); do kill -0 $pid 2>/dev/null || break; sleep 0.01; done
  kill -9 $pid 2>/dev/null
  wait $pid; rc=$?
  if [ $rc -eq $want ] && grep -qx PASS "$wd/out" && ! grep -q '^FAIL' "$wd/out" && [ "$(grep -cx READY "$wd/out")" = 1 ]; then
    pass=$((pass+1)); printf 'ok    %s\n' "$c"
  else
    fail=$((fail+1)); printf 'FAIL  %s (exit %s)\n' "$c" "$rc"; sed 's/^/      /' "$wd/out" "$wd/err"
  fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
