"""Drive the emulator with the official Robotis Python SDK (dynamixel_sdk), an independent
host implementation. Usage: sdk_check.py PORT. The Rust test (tests/python_sdk.rs) sets up the
chain first: Koch arm, IDs 1-2 XL430-W250 (1060, fw 41), 3-6 XL330-M288 (1200, fw 45),
Present_Position = 1000 + id. Afterwards it checks the goals this script writes.
Exits non-zero with a message on the first mismatch."""
import sys

from dynamixel_sdk import (COMM_SUCCESS, GroupBulkRead, GroupSyncRead, GroupSyncWrite,
                           PacketHandler, PortHandler, DXL_HIBYTE, DXL_HIWORD, DXL_LOBYTE,
                           DXL_LOWORD)

IDS = [1, 2, 3, 4, 5, 6]
MODEL = {i: (1060 if i <= 2 else 1200) for i in IDS}
FIRMWARE = {i: (41 if i <= 2 else 45) for i in IDS}
PRESENT_POSITION, GOAL_POSITION, TORQUE_ENABLE, MODEL_NUMBER = 132, 116, 64, 0


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)


def ok(ph, res, err, what):
    check(res == COMM_SUCCESS, f"{what}: {ph.getTxRxResult(res)}")
    check(err == 0, f"{what}: status error {err} ({ph.getRxPacketError(err)})")


def le4(v):
    return [DXL_LOBYTE(DXL_LOWORD(v)), DXL_HIBYTE(DXL_LOWORD(v)),
            DXL_LOBYTE(DXL_HIWORD(v)), DXL_HIBYTE(DXL_HIWORD(v))]


def main():
    port = PortHandler(sys.argv[1])
    check(port.openPort(), "open port")
    check(port.setBaudRate(1000000), "set baud")
    ph = PacketHandler(2.0)

    for i in IDS:
        model, res, err = ph.ping(port, i)
        ok(ph, res, err, f"ping {i}")
        check(model == MODEL[i], f"ping {i}: model {model}")
    _, res, _ = ph.ping(port, 9)
    check(res != COMM_SUCCESS, "ping of an absent id must time out")

    found, res = ph.broadcastPing(port)
    check(res == COMM_SUCCESS, f"broadcast ping: {ph.getTxRxResult(res)}")
    check(sorted(found) == IDS, f"broadcast ping found {sorted(found)}")
    for i in IDS:
        check(found[i] == [MODEL[i], FIRMWARE[i]], f"broadcast ping {i}: {found[i]}")

    pos, res, err = ph.read4ByteTxRx(port, 3, PRESENT_POSITION)
    ok(ph, res, err, "read 3")
    check(pos == 1003, f"read 3: {pos}")
    model, res, err = ph.read2ByteTxRx(port, 5, MODEL_NUMBER)
    ok(ph, res, err, "read model 5")
    check(model == 1200, f"model 5: {model}")

    res, err = ph.write1ByteTxRx(port, 2, TORQUE_ENABLE, 1)
    ok(ph, res, err, "torque on 2")
    res, err = ph.write4ByteTxRx(port, 2, GOAL_POSITION, 1500)
    ok(ph, res, err, "write goal 2")
    goal, res, err = ph.read4ByteTxRx(port, 2, GOAL_POSITION)
    ok(ph, res, err, "read goal 2")
    check(goal == 1500, f"goal 2: {goal}")
    # EEPROM is locked while torque is on: access error (7).
    res, err = ph.write1ByteTxRx(port, 2, 11, 4)
    check(res == COMM_SUCCESS and err == 7, f"EEPROM write with torque on: res {res} err {err}")
    res, err = ph.write1ByteTxRx(port, 2, TORQUE_ENABLE, 0)
    ok(ph, res, err, "torque off 2")

    sync = GroupSyncRead(port, ph, PRESENT_POSITION, 4)
    for i in IDS:
        check(sync.addParam(i), f"sync read add {i}")
    res = sync.txRxPacket()
    check(res == COMM_SUCCESS, f"sync read: {ph.getTxRxResult(res)}")
    for i in IDS:
        check(sync.isAvailable(i, PRESENT_POSITION, 4), f"sync read {i} available")
        v = sync.getData(i, PRESENT_POSITION, 4)
        check(v == 1000 + i, f"sync read {i}: {v}")

    # Fast sync read (0x8A): one status packet for all.
    res = sync.fastSyncRead()
    check(res == COMM_SUCCESS, f"fast sync read: {ph.getTxRxResult(res)}")
    for i in IDS:
        v = sync.getData(i, PRESENT_POSITION, 4)
        check(v == 1000 + i, f"fast sync read {i}: {v}")

    write = GroupSyncWrite(port, ph, GOAL_POSITION, 4)
    for i in IDS:
        check(write.addParam(i, le4(2100 + i)), f"sync write add {i}")
    res = write.txPacket()
    check(res == COMM_SUCCESS, f"sync write: {ph.getTxRxResult(res)}")

    bulk = GroupBulkRead(port, ph)
    check(bulk.addParam(4, GOAL_POSITION, 4), "bulk add 4")
    check(bulk.addParam(1, MODEL_NUMBER, 2), "bulk add 1")
    check(bulk.addParam(6, PRESENT_POSITION, 4), "bulk add 6")
    res = bulk.txRxPacket()
    check(res == COMM_SUCCESS, f"bulk read: {ph.getTxRxResult(res)}")
    got = (bulk.getData(4, GOAL_POSITION, 4), bulk.getData(1, MODEL_NUMBER, 2),
           bulk.getData(6, PRESENT_POSITION, 4))
    check(got == (2104, 1060, 1006), f"bulk read: {got}")

    port.closePort()
    print("sdk_check: all passed")


if __name__ == "__main__":
    main()
