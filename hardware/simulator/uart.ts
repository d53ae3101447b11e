/**
 * What a UART receiving at `rxBaud` makes of bytes sent at `txBaud` (8N1):
 * the sender's waveform (idle high; per byte a low start bit, eight data bits
 * LSB first, a high stop bit) is sampled the way a receiver does — wait for a
 * falling edge, sample each bit in its middle at its own rate, check the stop
 * bit. A byte whose stop bit reads low is a framing error, which a tty in raw
 * mode delivers as a NUL. At equal rates the bytes come through unchanged;
 * at different rates the result is the garbage a wrong SERIAL_BAUD produces.
 * A pty carries bytes, not signals, so this stands in for the wire.
 */
export function resample(bytes: Uint8Array, txBaud: number, rxBaud: number): Uint8Array {
  if (txBaud === rxBaud) return bytes.slice();
  const bits: number[] = [1];
  for (const b of bytes) {
    bits.push(0);
    for (let i = 0; i < 8; i++) bits.push((b >> i) & 1);
    bits.push(1);
  }
  bits.push(1, 1);
  const line = (seconds: number) => bits[Math.floor(seconds * txBaud)] ?? 1;
  const out: number[] = [];
  let k = 1;
  for (;;) {
    // The next falling edge at or after bit period k.
    while (k < bits.length && !(bits[k] === 0 && bits[k - 1] === 1)) k++;
    if (k >= bits.length) break;
    const start = k / txBaud;
    const sample = (i: number) => line(start + (i + 0.5) / rxBaud);
    if (sample(0) !== 0) {
      k++;
      continue;
    }
    let value = 0;
    for (let i = 0; i < 8; i++) value |= sample(1 + i) << i;
    const stopOk = sample(9) === 1;
    out.push(stopOk ? value : 0);
    // The receiver looks for the next start from the end of this character.
    k = Math.max(k + 1, Math.ceil((start + 9.5 / rxBaud) * txBaud));
  }
  return Uint8Array.from(out);
}
