import type Docker from "dockerode";
import type { Config } from "../config";
import { inspectRemoteImage, RegistryError } from "../registries/manifest";
import { parseImageReference, repositoryOf, type ImageReference } from "../registries/reference";
import { engineMessage, PermanentFailure, statusCode } from "./containers";

export type PullProgress = { layersTotal: number; layersDone: number; bytesTotal: number; bytesDone: number };

/** What the lifecycle needs of an image once it is on the engine. */
export type ReadyImage = {
  /** What the container is created from: `repo@sha256:…` for registry images, so a re-creation runs the same bits. */
  run: string;
  /** The digest recorded on the instance: the manifest digest pulled, or the local image id. */
  digest: string;
  /** The image's VOLUME folders: each gets a size-capped tmpfs, never an anonymous volume on the host's disk. */
  volumePaths: string[];
};

const MIB = 1024 * 1024;
const mib = (bytes: number) => `${(bytes / MIB).toFixed(1)} MiB`;

async function inspectImage(docker: Docker, reference: string): Promise<Docker.ImageInspectInfo | null> {
  try {
    return await docker.getImage(reference).inspect();
  } catch (error) {
    if (statusCode(error) === 404) return null;
    throw error;
  }
}

const volumePathsOf = (info: Docker.ImageInspectInfo) => Object.keys((info.Config?.Volumes ?? {}) as Record<string, unknown>).sort();

/**
 * A catalogue image: used if on the engine, else pulled (IMAGE_PULL=missing)
 * within IMAGE_PULL_TIMEOUT_MS. Catalogue images are the operator's choice,
 * so no size limit applies.
 */
export async function ensureCatalogueImage(docker: Docker, config: Config, reference: string, onProgress: (p: PullProgress) => void): Promise<ReadyImage> {
  let info = await inspectImage(docker, reference);
  if (!info) {
    if (config.compute.imagePull === "never") throw new PermanentFailure(`image ${reference} is not present on this host and pulling is disabled (IMAGE_PULL=never)`);
    try {
      await pull(docker, config, reference, 0, onProgress);
    } catch (error) {
      throw new PermanentFailure(`image ${reference} is not present on this host and could not be pulled: ${engineMessage(error).slice(0, 200)}`);
    }
    info = await inspectImage(docker, reference);
    if (!info) throw new PermanentFailure(`image ${reference} was pulled but is not on the engine`);
  }
  return { run: reference, digest: info.RepoDigests?.[0]?.split("@")[1] ?? info.Id, volumePaths: volumePathsOf(info) };
}

/**
 * A customer's image from an allowed registry, within IMAGE_MAX_BYTES and
 * IMAGE_PULL_TIMEOUT_MS: the manifest is read first (a missing tag, an
 * unreachable registry or an oversized image fails here, before any byte is
 * pulled), then the image is pulled by the digest that was measured (a tag
 * moved meanwhile cannot smuggle in another image), then its unpacked size is
 * checked too (an image over the limit is removed again).
 */
export async function ensureRegistryImage(docker: Docker, config: Config, reference: string, knownDigest: string | null, onProgress: (p: PullProgress) => void): Promise<ReadyImage> {
  const ref = parseImageReference(reference);
  const limit = config.compute.imageMaxBytes;
  // Provisioned before (a start or re-creation): the digest recorded then is what runs, if the engine still has it.
  const pinned = knownDigest ?? ref.digest;
  if (pinned) {
    const present = await inspectImage(docker, `${repositoryOf(ref)}@${pinned}`);
    if (present) return { run: `${repositoryOf(ref)}@${pinned}`, digest: pinned, volumePaths: volumePathsOf(present) };
  }
  if (config.compute.imagePull === "never") throw new PermanentFailure(`image ${reference} is not present on this host and pulling is disabled (IMAGE_PULL=never)`);
  const remote = await measure(docker, config, { ...ref, digest: pinned ?? ref.digest });
  if (remote.compressedBytes > limit) {
    throw new PermanentFailure(`image ${reference} is ${mib(remote.compressedBytes)} compressed, over this platform's limit of ${mib(limit)} (IMAGE_MAX_BYTES)`);
  }
  const run = `${repositoryOf(ref)}@${remote.digest}`;
  try {
    await pull(docker, config, run, remote.compressedBytes, onProgress, remote.layers);
    // Layers the engine already had are not reported one by one.
    onProgress({ layersTotal: remote.layers, layersDone: remote.layers, bytesTotal: remote.compressedBytes, bytesDone: remote.compressedBytes });
  } catch (error) {
    throw new PermanentFailure(`image ${reference} could not be pulled: ${engineMessage(error).slice(0, 300)}`);
  }
  const info = await inspectImage(docker, run);
  if (!info) throw new PermanentFailure(`image ${reference} was pulled but is not on the engine`);
  if (info.Size > limit) {
    // Another instance may use it already (409): then it stays.
    await docker
      .getImage(run)
      .remove()
      .catch(() => undefined);
    throw new PermanentFailure(`image ${reference} unpacks to ${mib(info.Size)}, over this platform's limit of ${mib(limit)} (IMAGE_MAX_BYTES)`);
  }
  return { run, digest: remote.digest, volumePaths: volumePathsOf(info) };
}

async function measure(docker: Docker, config: Config, ref: ImageReference) {
  const version = await docker.version();
  try {
    return await inspectRemoteImage(ref, {
      insecure: config.compute.registries.insecure,
      platform: { os: String(version.Os ?? "linux"), architecture: String(version.Arch ?? "amd64") },
      timeoutMs: Math.min(30_000, config.compute.imagePullTimeoutMs),
    });
  } catch (error) {
    if (error instanceof RegistryError) throw new PermanentFailure(`image ${repositoryOf(ref)}:${ref.digest ?? ref.tag}: ${error.message}`);
    throw error;
  }
}

type PullEvent = { status?: string; id?: string; error?: string; errorDetail?: { message?: string }; progressDetail?: { current?: number; total?: number } };

/**
 * Pulls under the time limit. The engine reports failures in-band too
 * (`{"error": …}` lines, which docker-modem's followProgress does not treat
 * as errors): each event is checked. Aborting closes the connection, which
 * cancels the engine's pull.
 */
async function pull(docker: Docker, config: Config, reference: string, bytesTotal: number, onProgress: (p: PullProgress) => void, layersTotal = 0): Promise<void> {
  const timeoutMs = config.compute.imagePullTimeoutMs;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`the pull did not finish within ${timeoutMs} ms (IMAGE_PULL_TIMEOUT_MS)`)), timeoutMs);
  const layers = new Map<string, { current: number; total: number; done: boolean }>();
  const report = () => {
    let bytesDone = 0;
    let done = 0;
    for (const layer of layers.values()) {
      bytesDone += layer.done ? layer.total : layer.current;
      if (layer.done) done += 1;
    }
    onProgress({ layersTotal: Math.max(layersTotal, layers.size), layersDone: done, bytesTotal: Math.max(bytesTotal, bytesDone), bytesDone });
  };
  report();
  try {
    const stream = await docker.pull(reference, { abortSignal: controller.signal });
    await new Promise<void>((resolve, reject) => {
      controller.signal.addEventListener("abort", () => reject(controller.signal.reason), { once: true });
      docker.modem.followProgress(
        stream,
        (error: Error | null) => (error ? reject(error) : resolve()),
        (event: PullEvent) => {
          if (event.error) return reject(new Error(event.errorDetail?.message ?? event.error));
          if (!event.id || !event.status || event.id === reference) return;
          const layer = layers.get(event.id) ?? { current: 0, total: 0, done: false };
          if (event.status === "Downloading") {
            layer.current = event.progressDetail?.current ?? layer.current;
            layer.total = event.progressDetail?.total ?? layer.total;
          } else if (/^(Pull complete|Already exists|Download complete)$/.test(event.status)) {
            layer.done = layer.done || event.status !== "Download complete";
            layer.current = layer.total;
          }
          layers.set(event.id, layer);
          report();
        },
      );
    });
  } finally {
    clearTimeout(timer);
    // Ends the connection if an in-band error ended the wait first.
    controller.abort();
  }
}
