"""fibapi/gevent_poll.py: a zero-timeout poll answered by the OS, the same answers, no trip through the hub."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SERVER = Path(__file__).resolve().parents[1]

# Run in a process of its own: gevent's monkey-patching is for the whole process.
PROGRAM = """
import sys
from gevent import monkey
monkey.patch_all()
import select, socket, gevent, greenlet
os_poll = monkey.get_original("select", "poll")
stock = select.poll
from fibapi import gevent_poll
gevent_poll.apply()

def answers(poll_class, sock):
    poller = poll_class()
    poller.register(sock, select.POLLIN)
    return poller.poll(0)

def switches_during(fn):
    count = [0]
    greenlet.settrace(lambda event, args: count.__setitem__(0, count[0] + 1) if event == "switch" else None)
    try:
        fn()
    finally:
        greenlet.settrace(None)
    return count[0]

a, b = socket.socketpair()
cases = {}
cases["idle"] = a
b.sendall(b"x"); gevent.sleep(0.01)
cases["data waiting"] = a
c, d = socket.socketpair(); d.close()
cases["peer closed"] = c
for what, sock in cases.items():
    ours, theirs = answers(select.poll, sock), answers(os_poll, sock)
    assert [e for _, e in ours] == [e for _, e in theirs], (what, ours, theirs)
    print(what, [e for _, e in ours])
e, f = socket.socketpair(); fd = e.fileno(); poller = select.poll(); poller.register(fd, select.POLLIN); e.close()
assert poller.poll(0)[0][1] & select.POLLNVAL, "a closed descriptor is reported POLLNVAL"
idle, _ = socket.socketpair()
print("switches, stock", switches_during(lambda: answers(stock, idle)))
print("switches, ours", switches_during(lambda: answers(select.poll, idle)))
# Any other timeout still waits cooperatively: another greenlet runs meanwhile.
ran = []
other = gevent.spawn(lambda: ran.append(1))
assert select.poll.__name__ == "Poll"
poller = select.poll(); poller.register(idle, select.POLLIN)
assert poller.poll(50) == []
assert ran == [1], "a waiting poll let no other greenlet run"
print("ok")
"""


def test_zero_timeout_polls_are_answered_by_the_os_without_a_greenlet_switch() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=SERVER, capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(SERVER), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.rsplit(" ", 1) for line in result.stdout.splitlines() if line.startswith("switches"))
    assert int(lines["switches, stock"]) >= 1  # gevent's own goes through the hub
    assert int(lines["switches, ours"]) == 0
    assert result.stdout.strip().endswith("ok")
