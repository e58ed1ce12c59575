import { resetTally, tallyLines } from "./tally.js";

/** Prints one line per adversarial category at the end of `npm test`. */
export default function setup() {
  resetTally();
  return () => {
    const lines = tallyLines();
    if (lines.length) process.stdout.write(`\n${lines.join("\n")}\n`);
  };
}
