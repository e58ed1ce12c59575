/**
 * Every secret the process has read. Executors and loggers redact these, in the forms
 * they could leak in (raw, base64, URL-encoded, each line of a multi-line key).
 */
const known = new Set<string>();
let onRegister: ((value: string) => void) | undefined;

export function setMaskSink(sink: ((value: string) => void) | undefined): void {
  onRegister = sink;
  if (sink) for (const s of known) sink(s);
}

export function registerSecret(value: string | undefined): void {
  if (!value) return;
  const forms = new Set<string>([value, value.trim()]);
  forms.add(Buffer.from(value).toString("base64"));
  forms.add(encodeURIComponent(value));
  for (const line of value.split(/\r?\n/)) if (line.trim().length >= 8) forms.add(line.trim());
  for (const f of forms) {
    if (f.length < 4 || known.has(f)) continue;
    known.add(f);
    onRegister?.(f);
  }
}

export function redact(text: string): string {
  let out = text;
  // Longest first, so a full key is replaced before any of its lines.
  for (const s of [...known].sort((a, b) => b.length - a.length)) out = out.split(s).join("***");
  return out;
}

export function knownSecretCount(): number {
  return known.size;
}

/** Tests only. */
export function forgetSecrets(): void {
  known.clear();
}
