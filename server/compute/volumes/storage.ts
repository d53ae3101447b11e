import { constants } from "node:fs";
import { access, mkdir, open, rename, rm, statfs } from "node:fs/promises";
import { dirname } from "node:path";
import type Docker from "dockerode";
import type { Config } from "../../config";
import { LABELS, PermanentFailure, statusCode } from "../containers";

/**
 * A volume's storage on its engine host: an ext4 filesystem in a file under
 * VOLUMES_DIR, allocated in full up front (`fallocate`: a sparse file would
 * let the disk be overcommitted), attached to a loop device and handed to
 * the engine as a `local` volume of type ext4 on that device. Docker never
 * makes or formats the file itself, and its `o=loop` option fails on 20.10
 * (mount(2) does not set up loops), hence this recipe.
 *
 * Loop attachments do not survive a reboot, and after one a device number
 * may name another file: the filesystem's UUID is the volume's id, and it is
 * checked on the device before the engine is told to use it. Everything here
 * is idempotent and safe to run again after a crash at any step.
 *
 * Needs root on the engine's host (losetup, mkfs): only engines on the
 * workers' own machine qualify (`volumeSupport`).
 */

export const volumeFile = (config: Config, volumeId: string) => `${config.compute.volumes.dir}/${volumeId}.img`;
export const dockerVolumeName = (config: Config, volumeId: string) => `${config.docker.namespace}-vol-${volumeId}`;

const MIB = 1024 * 1024;

async function run(argv: string[]): Promise<string> {
  const child = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  if (code !== 0) throw new Error(`${argv[0]} failed (exit ${code}): ${err.trim().slice(0, 300)}`);
  return out;
}

const exists = (path: string) =>
  access(path, constants.F_OK).then(
    () => true,
    () => false,
  );

/** Whether this process can make volumes for the engine at `endpoint`, and if not, why. */
export async function volumeSupport(config: Config, endpoint: string): Promise<{ supported: boolean; note: string | null; capacityMb: number }> {
  if (!endpoint.startsWith("unix://")) {
    return { supported: false, note: "remote engine: volumes are made with losetup and mkfs.ext4 as root on the engine's own host; run the workers there", capacityMb: 0 };
  }
  if (process.getuid?.() !== 0) return { supported: false, note: "the workers do not run as root (losetup and mkfs.ext4 need it)", capacityMb: 0 };
  for (const tool of ["fallocate", "mkfs.ext4", "losetup"]) {
    if (!Bun.which(tool, { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` })) return { supported: false, note: `${tool} is not installed (util-linux, e2fsprogs)`, capacityMb: 0 };
  }
  if (!(await exists("/dev/loop-control"))) return { supported: false, note: "no loop device support (/dev/loop-control is missing)", capacityMb: 0 };
  await mkdir(config.compute.volumes.dir, { recursive: true, mode: 0o700 });
  const fs = await statfs(config.compute.volumes.dir);
  return { supported: true, note: null, capacityMb: Math.floor((fs.blocks * fs.bsize * config.compute.volumes.diskShare) / MIB) };
}

/** The loop devices the file is attached to (`losetup -j`). */
async function attachedDevices(file: string): Promise<string[]> {
  const out = await run(["losetup", "-j", file]);
  return out
    .split("\n")
    .map((line) => line.split(":")[0]!.trim())
    .filter((device) => device.startsWith("/dev/loop"));
}

/** The ext4 superblock's UUID (offset 1024 + 0x68), formatted like a UUID; null when unreadable. */
async function filesystemUuid(device: string): Promise<string | null> {
  const handle = await open(device, "r").catch(() => null);
  if (!handle) return null;
  try {
    const buffer = Buffer.alloc(16);
    const { bytesRead } = await handle.read(buffer, 0, 16, 1024 + 0x68);
    if (bytesRead !== 16) return null;
    const hex = buffer.toString("hex");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  } finally {
    await handle.close();
  }
}

export type VolumeSpec = { id: string; userId: string; sizeMb: number };

/**
 * Makes the file (once), attaches it, and makes the engine's volume point at
 * its device; returns the engine's volume name. `owner` is the host-side
 * uid:gid of the instance user (shifted under userns-remap), so the
 * filesystem's root belongs to the user the container runs as.
 */
export async function ensureVolumeStorage(docker: Docker, config: Config, volume: VolumeSpec, owner: { uid: number; gid: number }): Promise<{ dockerName: string; device: string }> {
  const file = volumeFile(config, volume.id);
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  if (!(await exists(file))) {
    const partial = `${file}.partial`;
    await rm(partial, { force: true });
    try {
      await run(["fallocate", "-l", String(volume.sizeMb * MIB), partial]);
      // -m 0: no blocks reserved for root (the tenant is never root). nodiscard and no lazy initialisation: the kernel would
      // otherwise zero the inode tables after mounting by punching holes in the file, giving back disk it must own. The UUID is the id.
      await run([
        "mkfs.ext4",
        "-q",
        "-F",
        "-m",
        "0",
        "-U",
        volume.id,
        "-L",
        `sahary-${volume.id.slice(0, 8)}`,
        "-E",
        `root_owner=${owner.uid}:${owner.gid},nodiscard,lazy_itable_init=0,lazy_journal_init=0`,
        partial,
      ]);
    } catch (error) {
      await rm(partial, { force: true });
      throw new PermanentFailure(`the volume's ${volume.sizeMb} MiB could not be allocated on the host: ${(error as Error).message}`);
    }
    await rename(partial, file);
  }
  let [device] = await attachedDevices(file);
  if (!device) device = (await run(["losetup", "--find", "--show", file])).trim();
  if ((await filesystemUuid(device)) !== volume.id) throw new Error(`loop device ${device} does not hold volume ${volume.id}'s filesystem`);

  const dockerName = dockerVolumeName(config, volume.id);
  const current = await docker
    .getVolume(dockerName)
    .inspect()
    .catch((error: unknown) => {
      if (statusCode(error) === 404) return null;
      throw error;
    });
  if (current && (current.Options as Record<string, string> | null)?.device === device) return { dockerName, device };
  // Made for a device number the file no longer has (a reboot): the engine would mount whatever that device holds now.
  if (current) await docker.getVolume(dockerName).remove();
  await docker.createVolume({
    Name: dockerName,
    Driver: "local",
    DriverOpts: { type: "ext4", device },
    Labels: { [LABELS.namespace]: config.docker.namespace, [LABELS.owner]: volume.userId, [LABELS.volume]: volume.id, [LABELS.kind]: "volume" },
  });
  return { dockerName, device };
}

/** Removes the engine's volume, detaches the file and deletes it. A volume still mounted by a container is an error (retried). */
export async function removeVolumeStorage(docker: Docker, config: Config, volumeId: string): Promise<void> {
  try {
    await docker.getVolume(dockerVolumeName(config, volumeId)).remove();
  } catch (error) {
    if (statusCode(error) !== 404) throw error;
  }
  const file = volumeFile(config, volumeId);
  if (await exists(file)) for (const device of await attachedDevices(file)) await run(["losetup", "-d", device]);
  await rm(file, { force: true });
  await rm(`${file}.partial`, { force: true });
}

/** Re-attaches a volume's file after a reboot (the engine's volume is then re-pointed when its instance starts). */
export async function reattachVolume(config: Config, volumeId: string): Promise<boolean> {
  const file = volumeFile(config, volumeId);
  if (!(await exists(file)) || (await attachedDevices(file)).length > 0) return false;
  await run(["losetup", "--find", "--show", file]);
  return true;
}
