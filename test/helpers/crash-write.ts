// Run as a child process: starts an atomic write of argv[2] with argv[3] as the new content,
// and dies by SIGKILL between the fsynced temp file and the rename (a crash at the worst moment).
import { writeFileAtomic } from '../../src/server/index.js';

const [file, text] = process.argv.slice(2);
await writeFileAtomic(file!, text!, {
  beforeRename: () => {
    process.kill(process.pid, 'SIGKILL');
    return new Promise(() => {});
  },
});
