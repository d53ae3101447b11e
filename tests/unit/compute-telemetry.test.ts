import { describe, expect, test } from "bun:test";
import { demuxLogs } from "../../server/compute/logs";
import { summarizeStats } from "../../server/compute/stats";

function frame(stream: 1 | 2, text: string): Buffer {
  const payload = Buffer.from(text, "utf8");
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

describe("log demultiplexing", () => {
  test("splits stdout and stderr frames into timestamped lines, in order", () => {
    const raw = Buffer.concat([frame(1, "2026-11-21T09:00:00.123456789Z hello\n"), frame(2, "2026-11-21T09:00:01.000000000Z oops\n"), frame(1, "2026-11-21T09:00:02.5Z bye\n")]);
    expect(demuxLogs(raw)).toEqual([
      { stream: "stdout", at: "2026-11-21T09:00:00.123Z", message: "hello" },
      { stream: "stderr", at: "2026-11-21T09:00:01.000Z", message: "oops" },
      { stream: "stdout", at: "2026-11-21T09:00:02.500Z", message: "bye" },
    ]);
  });

  test("orders lines by their timestamps when the engine's file order interleaves the streams", () => {
    const raw = Buffer.concat([frame(2, "2026-11-21T09:00:00.3Z late\n"), frame(1, "2026-11-21T09:00:00.123456789Z early\n"), frame(1, "2026-11-21T09:00:00.2Z middle\n")]);
    expect(demuxLogs(raw).map((l) => l.message)).toEqual(["early", "middle", "late"]);
  });

  test("joins a line split across frames and keeps a last line without a newline", () => {
    const raw = Buffer.concat([frame(1, "2026-11-21T09:00:00Z par"), frame(1, "tial\n2026-11-21T09:00:01Z tail")]);
    expect(demuxLogs(raw).map((l) => l.message)).toEqual(["partial", "tail"]);
  });

  test("a truncated frame at the end does not throw", () => {
    const raw = Buffer.concat([frame(1, "2026-11-21T09:00:00Z whole\n"), frame(2, "2026-11-21T09:00:01Z cut off here").subarray(0, 14)]);
    expect(demuxLogs(raw)[0]!.message).toBe("whole");
  });
});

describe("stats summary", () => {
  const sample = {
    read: "2026-11-21T09:00:01.000000000Z",
    cpu_stats: { cpu_usage: { total_usage: 3_000_000_000 }, system_cpu_usage: 120_000_000_000, online_cpus: 2 },
    precpu_stats: { cpu_usage: { total_usage: 2_500_000_000 }, system_cpu_usage: 118_000_000_000 },
    memory_stats: { usage: 50 * 1024 * 1024, limit: 256 * 1024 * 1024, stats: { total_inactive_file: 10 * 1024 * 1024 } },
    networks: { eth0: { rx_bytes: 1000, tx_bytes: 500, rx_packets: 10, tx_packets: 5 }, eth1: { rx_bytes: 24, tx_bytes: 12, rx_packets: 1, tx_packets: 1 } },
    blkio_stats: {
      io_service_bytes_recursive: [
        { op: "Read", value: 4096 },
        { op: "Write", value: 8192 },
        { op: "Total", value: 12288 },
      ],
    },
    pids_stats: { current: 3 },
  };

  test("computes CPU as the docker CLI does, and relative to the plan's vCPUs", () => {
    // 0.5 s of CPU over 2 s of host time on 2 CPUs: half a core.
    const stats = summarizeStats(sample, 0.25);
    expect(stats.cpu.percent).toBe(50);
    expect(stats.cpu.percentOfPlan).toBe(200);
    expect(stats.cpu.totalUsageNs).toBe(3_000_000_000);
  });

  test("memory excludes reclaimable page cache; network and block I/O are summed", () => {
    const stats = summarizeStats(sample, 1);
    expect(stats.memory).toEqual({ usageBytes: 40 * 1024 * 1024, limitBytes: 256 * 1024 * 1024, percent: 15.63 });
    expect(stats.network).toEqual({ rxBytes: 1024, txBytes: 512, rxPackets: 11, txPackets: 6 });
    expect(stats.blockIo).toEqual({ readBytes: 4096, writeBytes: 8192 });
    expect(stats.pids.current).toBe(3);
    expect(stats.at).toBe("2026-11-21T09:00:01.000Z");
  });

  test("a sample without a previous reading reports 0 % CPU rather than nonsense", () => {
    const { precpu_stats: _, ...first } = sample;
    expect(summarizeStats(first, 1).cpu.percent).toBe(0);
  });
});
