import { StringDecoder } from 'node:string_decoder';
import type { ReadStream } from 'node:tty';

/**
 * What keys typed at a terminal in raw mode make of lines. Raw mode turns off the terminal's echo,
 * and with it the rest of its line editing, so that is done here: Enter ends a line, Backspace
 * takes back a character, Ctrl-U the whole line, Ctrl-D ends the line, Ctrl-C gives up; arrow
 * and other escape sequences and the remaining control characters are no part of a password.
 */
export class LineEditor {
  readonly lines: string[] = [];
  cancelled = false;
  /** the line being typed, one code point a character, so that Backspace takes back a whole one */
  private line: string[] = [];
  /** a terminal or a paste may end a line with CR LF: the LF ends no second line */
  private afterCR = false;
  /** 1: after ESC; 2: inside a CSI (ESC [) or SS3 (ESC O) sequence, until its final byte */
  private escape: 0 | 1 | 2 = 0;

  feed(text: string): void {
    for (const ch of text) {
      if (this.cancelled) return;
      const afterCR = this.afterCR;
      this.afterCR = false;
      if (this.escape === 1) {
        this.escape = ch === '[' || ch === 'O' ? 2 : 0;
        continue;
      }
      if (this.escape === 2) {
        if (ch >= '@' && ch <= '~') this.escape = 0;
        continue;
      }
      switch (ch) {
        case '\x03':
          this.cancelled = true;
          return;
        case '\r':
          this.end();
          this.afterCR = true;
          break;
        case '\n':
          if (!afterCR) this.end();
          break;
        case '\x04':
          this.end();
          break;
        case '\x7f':
        case '\b':
          this.line.pop();
          break;
        case '\x15':
          this.line = [];
          break;
        case '\x1b':
          this.escape = 1;
          break;
        default:
          if (ch >= ' ') this.line.push(ch);
      }
    }
  }

  private end(): void {
    this.lines.push(this.line.join(''));
    this.line = [];
  }
}

/**
 * One line typed at the terminal `input` after each of `prompts` (written to `output`), not shown
 * as it is typed; undefined when the user gives up (Ctrl-C) or the input ends first. The
 * terminal's mode is put back however it ends.
 */
export function promptHidden(prompts: readonly string[], input: ReadStream, output: NodeJS.WritableStream): Promise<string[] | undefined> {
  return new Promise((resolve) => {
    const editor = new LineEditor();
    const decoder = new StringDecoder('utf8');
    const wasRaw = input.isRaw;
    const finish = (lines: string[] | undefined): void => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.setRawMode(wasRaw);
      // stops reading, so that the terminal no longer keeps the process alive
      input.pause();
      resolve(lines);
    };
    const onData = (chunk: Buffer): void => {
      const before = editor.lines.length;
      editor.feed(decoder.write(chunk));
      // the Enter the terminal no longer echoes moves the cursor on, to the next prompt if any
      for (let i = before; i < editor.lines.length && i < prompts.length; i++) output.write(`\n${prompts[i + 1] ?? ''}`);
      if (editor.cancelled) {
        output.write('\n');
        finish(undefined);
      } else if (editor.lines.length >= prompts.length) {
        finish(editor.lines.slice(0, prompts.length));
      }
    };
    const onEnd = (): void => {
      output.write('\n');
      finish(undefined);
    };
    input.setRawMode(true);
    output.write(prompts[0] ?? '');
    input.on('data', onData);
    input.on('end', onEnd);
    input.resume();
  });
}
