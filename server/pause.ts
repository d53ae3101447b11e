/**
 * A sleep that `wake()` cuts short, for loops that wait between rounds and
 * must stop at once when their process shuts down.
 */
export function interruptibleSleep() {
  let wake: (() => void) | undefined;
  return {
    sleep: (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      }),
    wake: () => wake?.(),
  };
}
