import { createWriteStream, type WriteStream } from 'node:fs';

/** The actors of the reference sequence diagram (diagrams/sequence.md), in its order. */
export const ACTORS = ['User', 'CommonServer', 'appGroup', 'appServer', 'Client', 'LocalApp'] as const;
export type Actor = (typeof ACTORS)[number];

/** The phases of the reference diagram, in the order a session goes through them. */
export type Phase = 'Preparation' | 'Initialisation' | 'heartbeat' | 'Proxying';

/** Mermaid message text may not hold `;`, `#` (entity syntax) or a line break. */
export function label(text: string): string {
  return text
    .replace(/[;#\r\n]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

/**
 * Writes a Mermaid sequence diagram as a session happens, one line per step, so that the
 * file is a valid diagram at every moment (no block is left open between two events).
 */
export class MermaidTrace {
  private readonly out: WriteStream;
  private readonly phasesSeen = new Set<Phase>();

  constructor(file: string) {
    this.out = createWriteStream(file, { flags: 'w' });
    this.out.on('error', () => {}); // a trace must never take the process down
    this.raw('sequenceDiagram', 'autonumber', ...ACTORS.map((actor) => `participant ${actor}`));
  }

  /** `Note over …: <phase>` the first time a phase is entered (or every time with `again`). */
  phase(phase: Phase, { again = false } = {}): void {
    if (this.phasesSeen.has(phase) && !again) return;
    this.phasesSeen.add(phase);
    const span = phase === 'Proxying' ? 'User, LocalApp' : 'CommonServer, Client';
    this.raw(`Note over ${span}: ${phase}`);
  }

  /** `from ->> to: text`; `reply` draws a dashed answer, `lost` a cross. */
  message(from: Actor, to: Actor, text: string, { reply = false, lost = false } = {}): void {
    const arrow = lost ? (reply ? '--x' : '-x') : reply ? '-->>' : '->>';
    this.raw(`${from} ${arrow} ${to}: ${label(text)}`);
  }

  note(over: Actor | `${Actor}, ${Actor}`, text: string): void {
    this.raw(`Note over ${over}: ${label(text)}`);
  }

  /** A block drawn whole (loop … end), so that it is always closed. */
  block(kind: 'loop' | 'opt', title: string, draw: () => void): void {
    this.raw(`${kind} ${label(title)}`);
    draw();
    this.raw('end');
  }

  raw(...lines: string[]): void {
    for (const line of lines) this.out.write(`${line}\n`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.out.end(resolve));
  }
}
