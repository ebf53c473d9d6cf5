// Type-checks the provisioned dashboard against Grafana's published schema
// (@grafana/schema): `tsc --noEmit` fails when a field has the wrong type or a
// required field is missing. JSON imports widen string literals to `string`,
// so the enum-typed fields this dashboard uses (a variable's `type`, a value
// mapping's `type`) are narrowed explicitly, after checking their values; every
// other field is checked as written.
import type { Dashboard, MappingType, ValueMap, ValueMapping, VariableModel, VariableType } from '@grafana/schema';
import dashboard from '../dashboards/rectifier.json';

type JsonVariable = (typeof dashboard.templating.list)[number];
type JsonPanel = (typeof dashboard.panels)[number];

const variables: VariableModel[] = dashboard.templating.list.map((v: JsonVariable) => ({
  ...v,
  type: v.type as VariableType,
}));

// Value mappings: only `value` maps are used; any other type fails here.
// Their options are checked as written (ValueMap['options']).
const narrowMappings = (
  mappings: Array<{ type: string; options: ValueMap['options'] }> | undefined,
): ValueMapping[] | undefined =>
  mappings?.map((m) => {
    if (m.type !== 'value') throw new Error(`unexpected mapping type ${m.type}`);
    return { ...m, type: 'value' as MappingType.ValueToText };
  });

const panels = dashboard.panels.map((p: JsonPanel) =>
  p.fieldConfig !== undefined
    ? {
        ...p,
        fieldConfig: {
          ...p.fieldConfig,
          defaults: {
            ...p.fieldConfig.defaults,
            mappings: narrowMappings('mappings' in p.fieldConfig.defaults ? p.fieldConfig.defaults.mappings : undefined),
          },
        },
      }
    : p,
);

export const checked: Dashboard = {
  ...dashboard,
  panels,
  templating: { list: variables },
};
