import createDebug from 'debug';
import type { PoolsConfig } from '../../config/index.js';
import { SharedPort, type PoolView } from './shared-port.js';
import type { AppServer } from '../public/app-server.js';
import type { EmitServerEvent } from '../events.js';
import type { VhostRouter } from '../../vhost/index.js';

const debug = createDebug('ntp:server:shared-ports:shared-ports');

/**
 * Every open pool of a commonserver, by name. A pool's public port (or, for a vhost pool, its
 * route on the vhost ports) opens when its first member joins and closes when its last one
 * leaves: it stays open while any member is active.
 */
export class SharedPorts {
  private readonly pools = new Map<string, SharedPort>();
  /** Pools whose port is being bound: members joining meanwhile wait for the same bind. */
  private readonly binding = new Map<string, Promise<SharedPort>>();

  constructor(
    private readonly bindHost: string,
    private readonly config: PoolsConfig,
    private readonly emit: EmitServerEvent,
    /** The vhost ports' router, when the server has them: vhost pools are attached to it. */
    private readonly router?: VhostRouter,
  ) {}

  /**
   * Adds `app` of `group` to pool `name` on `port` (opening the port if the pool is not open);
   * resolves with the pool's port, rejects with the bind error (the member is then not added).
   */
  async join(name: string, port: number, group: string, app: AppServer): Promise<number> {
    const pool = this.pools.get(name) ?? (await this.open(name, port));
    if (port !== 0 && pool.port !== port) {
      const where = pool.port === 0 ? 'routed by name on the vhost ports (a pool of web apps)' : `open on port ${pool.port}`;
      throw Object.assign(new Error(`pool "${name}" is ${where}, not on port ${port}`), { code: 'EPOOLPORT' });
    }
    this.addMember(pool, group, app);
    return pool.port;
  }

  /**
   * Adds a vhost app (http or https) of `group` to pool `name`, opening the pool if needed: the
   * pool's names then lead to the pool, which picks a member for each user conn. The registry
   * made every member agree on the names, so the pool's routes are its first member's.
   */
  joinVhost(name: string, group: string, app: AppServer): void {
    let pool = this.pools.get(name);
    // A tcp pool of that name opening (or open): the pool changed its type in the registry and
    // its old members have not all left yet. This app fails to open (app-failed says why) until
    // its group's next activation or edit.
    if (this.binding.has(name) || (pool !== undefined && pool.port !== 0)) {
      throw Object.assign(new Error(`pool "${name}" is a tcp pool (port ${pool?.port ?? 'being bound'}): a vhost app cannot join it now`), {
        code: 'EPOOLPORT',
      });
    }
    if (pool === undefined) {
      const balance = this.config[name]?.balance ?? 'round_robin';
      pool = new SharedPort(name, balance, this.emit);
      this.pools.set(name, pool);
      this.emit({ type: 'pool-opened', pool: name, port: 0, balance });
    }
    this.addMember(pool, group, app);
    this.router?.attach(pool);
  }

  private addMember(pool: SharedPort, group: string, app: AppServer): void {
    pool.add(group, app);
    app.poolMembership = { leave: (reason) => this.leave(pool, app, reason), reroute: (userConn, reason) => pool.reroute(userConn, app, reason) };
  }

  /** Records a member's health as its client reported it; false if it is not a member of that pool. */
  setHealth(name: string, group: string, healthy: boolean, reason: string): boolean {
    return this.pools.get(name)?.setHealth(group, healthy, reason) ?? false;
  }

  views(): PoolView[] {
    return [...this.pools.values()].map((pool) => pool.view(this.router?.config.subdomainHost)).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  get(name: string): SharedPort | undefined {
    return this.pools.get(name);
  }

  private leave(pool: SharedPort, app: AppServer, reason: string): void {
    if (!pool.remove(app, reason) || pool.size > 0 || this.pools.get(pool.name) !== pool) return;
    this.pools.delete(pool.name);
    this.router?.detach(pool);
    pool.close();
    debug('pool %s closed: its last member left', pool.name);
    this.emit({ type: 'pool-closed', pool: pool.name, reason: `its last member left (${reason})` });
  }

  private open(name: string, port: number): Promise<SharedPort> {
    const pending = this.binding.get(name);
    if (pending !== undefined) return pending;
    const balance = this.config[name]?.balance ?? 'round_robin';
    const pool = new SharedPort(name, balance, this.emit);
    const bound = pool.listen(this.bindHost, port).then(
      () => {
        this.binding.delete(name);
        this.pools.set(name, pool);
        this.emit({ type: 'pool-opened', pool: name, port: pool.port, balance });
        // The members that waited for this bind join in this turn's microtasks; one that did not
        // (its port differed) must not leave an empty pool holding the port.
        setImmediate(() => this.closeIfEmpty(pool));
        return pool;
      },
      (error: Error) => {
        this.binding.delete(name);
        throw error;
      },
    );
    this.binding.set(name, bound);
    return bound;
  }

  /** A pool whose members all left (or whose joiner gave up) while it was being bound. */
  private closeIfEmpty(pool: SharedPort): void {
    if (pool.size > 0 || this.pools.get(pool.name) !== pool) return;
    this.pools.delete(pool.name);
    pool.close();
    this.emit({ type: 'pool-closed', pool: pool.name, reason: 'no member left once its port was bound' });
  }
}
