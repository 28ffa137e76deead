from etcdpy.raft.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
)


def test_conf_change_round_trip() -> None:
    cc = ConfChange(
        (
            ConfChangeSingle(ConfChangeType.ADD_NODE, 7),
            ConfChangeSingle(ConfChangeType.ADD_LEARNER_NODE, 2**64 - 1),
        ),
        ConfChangeTransition.JOINT_EXPLICIT,
        b"ctx",
    )
    assert ConfChange.decode(cc.encode()) == cc


def test_empty_conf_change_leaves_joint() -> None:
    assert ConfChange().leave_joint()
    assert ConfChange.decode(ConfChange().encode()).leave_joint()
