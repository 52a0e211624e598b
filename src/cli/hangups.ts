import { fromEvent, map, ReplaySubject, type Observable } from 'rxjs';

/**
 * SIGHUP (what `systemctl reload` sends) from the first moment of `main`. Its default action
 * ends the process, and a service manager may send it as soon as the process exists, well
 * before the config is loaded and the reload wired up; systemd would then count the end as
 * clean and not restart. One early SIGHUP is kept and delivered to the first subscriber: a
 * reload is idempotent, so one stands for any number.
 */
export function catchHangups(): Observable<void> {
  const hangups$ = new ReplaySubject<void>(1);
  fromEvent(process, 'SIGHUP')
    .pipe(map(() => undefined))
    .subscribe(hangups$);
  return hangups$;
}
