"""The watcher of one host's ranks of a data-parallel job: names a rank that dies without a word.

A rank killed outright (SIGKILL, the out-of-memory killer, a crash in native code) cannot
say so, and the launcher that then ends the job names at best a pid (MPICH's hydra names
whichever process it saw end). So local rank 0 of every host starts this script (standard
library only, its own session, so that signals sent to the job pass it by); each rank of
the host connects to its Unix socket, says who it is, and before it exits says ``done`` (a
normal end) or ``abort`` (it reported its own failure and calls MPI_Abort). A connection
that closes without either is a rank that died: the first one is reported, naming its rank,
pid and host. If the launcher has not ended this host's other ranks ``GRACE`` seconds
later, they are killed (they would wait for the dead one forever). The script ends when
every rank it watches has gone.

    python rank_watch.py SOCKET '{"program": ..., "size": N, "host": ..., "expected": n, "starter": pid}'
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time

GRACE = 5.0             # seconds the launcher has to end the others before this script does
CONNECT_WAIT = 120.0    # seconds to wait for the host's ranks to connect
POLL = 1.0              # seconds between checks that watched processes still exist


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def say(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def watch(path: str, job: dict) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".new")                 # the socket appears at ``path`` only once it listens:
    listener.listen(64)                          # a rank that sees it can connect
    os.rename(path + ".new", path)
    ranks: dict[socket.socket, dict] = {}        # connection -> {"rank", "pid", "said", "buffer"}
    accepted, started, ending_since = 0, time.monotonic(), None
    starter = job.get("starter")                 # local rank 0, which started this script
    while True:
        waiting = accepted < job["expected"] and time.monotonic() - started < CONNECT_WAIT
        if waiting and not ranks and starter is not None and not alive(starter):
            waiting = False                      # the ranks that never connected are not coming
        if not ranks and not waiting:
            break
        readable, _, _ = select.select([listener, *ranks] if waiting else list(ranks), [], [], POLL)
        closed = []
        for conn in readable:
            if conn is listener:
                ranks[listener.accept()[0]] = {"rank": None, "pid": None, "said": None, "buffer": b""}
                accepted += 1
                continue
            info = ranks[conn]
            data = conn.recv(4096)
            info["buffer"] += data
            *lines, info["buffer"] = info["buffer"].split(b"\n")
            for line in lines:
                if line.startswith(b"{"):
                    info.update(json.loads(line))
                elif line in (b"done", b"abort"):
                    info["said"] = line.decode()
            if not data:
                closed.append(conn)
        # a rank whose socket a forked child still holds: its process is gone all the same
        closed += [conn for conn, info in ranks.items() if conn not in closed and info["pid"] is not None
                   and not alive(info["pid"])]
        if closed:
            ending_since = gone(closed, ranks, job, ending_since)
        if ending_since is not None and ranks and time.monotonic() - ending_since > GRACE:
            left = sorted(info["rank"] for info in ranks.values() if info["rank"] is not None)
            say(f"{job['program']}: ending rank(s) {', '.join(map(str, left))} on {job['host']}, which were still "
                "waiting for the rank that died")
            for info in ranks.values():
                if info["pid"] is not None:
                    try:
                        os.kill(info["pid"], signal.SIGKILL)
                    except OSError:
                        pass
            ending_since = time.monotonic()
    listener.close()


def gone(closed: list, ranks: dict, job: dict, ending_since: float | None) -> float | None:
    """Watched ranks' connections closed at one moment: report the ones that died without a word
    unless the job is already ending; returns when it began to end (None: it is not)."""
    infos = [ranks.pop(conn) for conn in closed]
    for conn in closed:
        conn.close()
    silent = sorted((info["rank"], info["pid"]) for info in infos if info["said"] is None and info["rank"] is not None)
    if ending_since is None and silent:
        why = ("killed by a signal or by the system (out of memory?), or ended by the launcher after another rank "
               "failed (see its message); the job ends")
        if len(silent) == 1:
            say(f"{job['program']}: error: rank {silent[0][0]} of {job['size']} (pid {silent[0][1]} on {job['host']}) "
                f"died without a word: {why}")
        else:                   # the launcher ended the others before this watcher saw the first go
            names = ", ".join(f"rank {rank} (pid {pid})" for rank, pid in silent)
            say(f"{job['program']}: error: one of {names} of {job['size']} on {job['host']} died without a word and "
                f"the launcher ended the others at the same moment: {why}")
    if ending_since is None and any(info["said"] != "done" for info in infos):
        return time.monotonic()
    return ending_since


def main() -> None:
    path, job = sys.argv[1], json.loads(sys.argv[2])
    try:
        watch(path, job)
    finally:
        for leftover in (path + ".new", path, os.path.dirname(path)):
            try:
                os.rmdir(leftover) if leftover == os.path.dirname(path) else os.unlink(leftover)   # sockets, then their dir
            except OSError:
                pass


if __name__ == "__main__":
    main()
