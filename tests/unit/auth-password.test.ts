import { describe, expect, test } from "bun:test";
import { isAppError } from "../../server/errors";
import { assertStrongPassword, hashPassword, needsRehash, passwordWeaknesses, verifyAgainstNothing, verifyPassword } from "../../server/auth/password";
import { credentialMac, generateToken, TOKEN_PATTERN } from "../../server/auth/tokens";

const account = { email: "grace.hopper@example.test", name: "Grace Hopper" };
const FAST = { memoryKib: 4096, timeCost: 1 };

describe("password policy", () => {
  test("accepts long, uncommon passphrases", () => {
    for (const password of ["sunlit-orchard-kettle-42", "Tr0pical dune at noon", "ünïcödé-pässwörd-ok", "7f#Kq2!mZx9v"]) {
      expect(passwordWeaknesses(password, account)).toEqual([]);
    }
  });

  test("refuses what attackers try first, with every reason named", () => {
    expect(passwordWeaknesses("short", account)).toContain("too_short");
    expect(passwordWeaknesses("Password2024!", account)).toEqual(["common"]);
    expect(passwordWeaknesses("!!qwertyuiop!!", account)).toEqual(["common"]);
    expect(passwordWeaknesses("correct horse battery staple", account)).toEqual(["common"]);
    expect(passwordWeaknesses("abcdefghijklmnop", account)).toContain("common");
    expect(passwordWeaknesses("9876543210", account)).toContain("common");
    expect(passwordWeaknesses("grace.hopper-2024", account)).toContain("contains_email");
    expect(passwordWeaknesses("GRACE.HOPPER@EXAMPLE.TEST", account)).toContain("contains_email");
    expect(passwordWeaknesses("I am Grace Hopper!", account)).toEqual(["contains_name"]);
    expect(passwordWeaknesses("abababababababab", account)).toEqual(["too_repetitive"]);
  });

  test("counts characters, not UTF-16 units", () => {
    expect(passwordWeaknesses("🌞🌵🐪🏜️🌙🔆", account)).toContain("too_short");
  });

  test("assertStrongPassword throws WEAK_PASSWORD with the reasons and the minimum length", () => {
    let caught: unknown;
    try {
      assertStrongPassword("letmein", account);
    } catch (error) {
      caught = error;
    }
    expect(isAppError(caught, "WEAK_PASSWORD")).toBe(true);
    expect((caught as { details: unknown }).details).toEqual({ reasons: ["too_short", "common"], minLength: 10 });
    expect(() => assertStrongPassword("sunlit-orchard-kettle-42", account)).not.toThrow();
  });
});

describe("password hashing", () => {
  test("Argon2id with the configured parameters; verification follows the hash's own parameters", async () => {
    const hash = await hashPassword("sunlit-orchard-kettle-42", FAST);
    expect(hash).toStartWith("$argon2id$v=19$m=4096,t=1,p=1$");
    expect(await verifyPassword("sunlit-orchard-kettle-42", hash)).toBe(true);
    expect(await verifyPassword("sunlit-orchard-kettle-43", hash)).toBe(false);
    expect(needsRehash(hash, FAST)).toBe(false);
    expect(needsRehash(hash, { memoryKib: 19456, timeCost: 2 })).toBe(true);
    expect(needsRehash("$2b$10$abcdefghijklmnopqrstuv", FAST)).toBe(true);
  });

  test("the stand-in verification for unknown accounts always fails", async () => {
    expect(await verifyAgainstNothing("anything", FAST)).toBe(false);
  });
});

describe("credential tokens", () => {
  test("are 256-bit, base32, and unique", () => {
    const tokens = new Set(Array.from({ length: 1000 }, () => generateToken()));
    expect(tokens.size).toBe(1000);
    for (const token of tokens) expect(token).toMatch(TOKEN_PATTERN);
  });

  test("stored MACs depend on the secret and the purpose", () => {
    const token = generateToken();
    const mac = credentialMac("secret-one", "reset_password", token);
    expect(mac).toMatch(/^[0-9a-f]{64}$/);
    expect(credentialMac("secret-one", "reset_password", token)).toBe(mac);
    expect(credentialMac("secret-two", "reset_password", token)).not.toBe(mac);
    expect(credentialMac("secret-one", "verify_email", token)).not.toBe(mac);
  });
});
