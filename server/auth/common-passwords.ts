/**
 * Passwords and base words that top every breach corpus (lower-case). The
 * policy looks a password up lower-cased, without spaces, and without the
 * digits and symbols around it, so "Password2024!" counts as "password".
 * Short entries matter for that stripped form although the length rule
 * refuses them on their own.
 */
export const COMMON_PASSWORDS: ReadonlySet<string> = new Set(
  `
123456 123456789 12345678 1234567890 1234567 12345 1234 111111 000000 123123 654321 666666 121212 112233 987654321
1q2w3e4r 1q2w3e4r5t 1qaz2wsx qwerty qwertyuiop qwerty123 asdfgh asdfghjkl zxcvbnm zxcvbn qazwsx azerty
password passw0rd p@ssword p@ssw0rd pass password1 mypassword letmein welcome welcome1 admin administrator root
toor login abc123 abcdef abcdefgh abcdefghij iloveyou iloveu princess sunshine shadow monkey dragon master
football baseball basketball soccer hockey superman batman starwars pokemon michael jennifer jordan hunter ranger
buster thomas robert daniel charlie andrew michelle jessica ashley nicole amanda matthew joshua anthony
trustno1 freedom whatever qwerty1 secret secret123 changeme default guest test tester testing test123 demo
computer internet google samsung apple nothing access master123 hello hello123 hellothere flower lovely
cheese chocolate cookie summer winter spring autumn liverpool chelsea arsenal barcelona killer pepper ginger
maggie tigger harley yankees cowboys eagles dallas london paris berlin soleil solar sahara sahary cloud
saharycloud solarpower letmein1 zaq12wsx q1w2e3r4 qweasdzxc 1qazxsw2 passwort motdepasse
contrasena senha parola wachtwoord salasana haslo jelszo heslo lozinka
correcthorsebatterystaple
`
    .split(/\s+/)
    .filter(Boolean),
);
