"""kill -9 of a process in the middle of appending: every acknowledged entry is read back, and
the log goes on from where it stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from etcdpy.raft.types import Entry, HardState
from etcdpy.wal.log import WAL

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from etcdpy.raft.types import Entry, HardState
    from etcdpy.wal.log import WAL

    wal = WAL.create(Path(sys.argv[1]), b"crash", segment_size=64 * 1024)
    index = 0
    while True:
        batch = [Entry(term=1, index=index + i, data=b"%d" % (index + i) * 30) for i in (1, 2, 3)]
        index += 3
        wal.save(HardState(1, 1, index), batch, sync=True)
        print(index, flush=True)  # acknowledged: durable
    """
)


def test_acknowledged_entries_survive_kill_9(tmp_path: Path) -> None:
    wal_dir = tmp_path / "wal"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(wal_dir)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acked = 0
    for line in child.stdout:
        acked = int(line)
        if acked >= 600:  # well past a segment cut
            break
    assert acked >= 600, "the writer stopped before the kill"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()

    wal = WAL.open(wal_dir, None)
    _, state, entries = wal.read_all()
    assert len(list(wal_dir.glob("*.wal"))) > 1
    assert len(entries) >= acked
    assert [e.index for e in entries] == list(range(1, len(entries) + 1))
    assert all(e.data == b"%d" % e.index * 30 for e in entries)
    assert state.commit >= acked
    last = entries[-1].index
    wal.save(HardState(2, 0, last), [Entry(term=2, index=last + 1, data=b"after")], sync=True)
    wal.close()

    wal = WAL.open(wal_dir, None)
    _, _, entries = wal.read_all()
    wal.close()
    assert entries[-1] == Entry(term=2, index=last + 1, data=b"after")
