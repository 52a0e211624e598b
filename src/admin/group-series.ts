import type { Counter, Gauge, Histogram } from 'prom-client';

type GroupLabels = { group: string; app?: string } & Record<string, string>;
type GroupMetric = Counter<string> | Gauge<string> | Histogram<string>;

/**
 * The label sets each group's series were created with, so that a group, or some of its
 * apps, can be removed from every metric at once: prom-client removes a series only by its
 * exact labels, and keeps each one until then.
 */
export class GroupSeries {
  /** group → metric → label sets (by their JSON) it has for that group. */
  private readonly byGroup = new Map<string, Map<GroupMetric, Map<string, GroupLabels>>>();

  /** `metric` bound to `labels`, remembered under their group (and app). */
  count<M extends GroupMetric>(metric: M, labels: GroupLabels): ReturnType<M['labels']> {
    let metrics = this.byGroup.get(labels.group);
    if (metrics === undefined) this.byGroup.set(labels.group, (metrics = new Map()));
    let sets = metrics.get(metric);
    if (sets === undefined) metrics.set(metric, (sets = new Map()));
    sets.set(JSON.stringify(labels), labels);
    return metric.labels(labels) as ReturnType<M['labels']>;
  }

  /**
   * Removes `group`'s series: all of them, or, given the apps it still has, those of its
   * other apps (series without an app label belong to the group and stay).
   */
  forget(group: string, keepApps?: ReadonlySet<string>): void {
    const metrics = this.byGroup.get(group);
    if (metrics === undefined) return;
    for (const [metric, sets] of metrics) {
      for (const [key, labels] of sets) {
        if (keepApps !== undefined && (labels.app === undefined || keepApps.has(labels.app))) continue;
        metric.remove(labels);
        sets.delete(key);
      }
    }
    if (keepApps === undefined) this.byGroup.delete(group);
  }
}
