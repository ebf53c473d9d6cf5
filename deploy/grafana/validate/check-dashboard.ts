// Type-checks the provisioned dashboard against Grafana's published schema
// (@grafana/schema): `tsc --noEmit` fails when a field has the wrong type or a
// required field is missing. JSON imports widen string literals to `string`,
// so the one enum-typed field this dashboard uses (a variable's `type`) is
// narrowed explicitly; every other field is checked as written.
import type { Dashboard, VariableModel, VariableType } from '@grafana/schema';
import dashboard from '../dashboards/rectifier.json';

type JsonVariable = (typeof dashboard.templating.list)[number];

const variables: VariableModel[] = dashboard.templating.list.map((v: JsonVariable) => ({
  ...v,
  type: v.type as VariableType,
}));

export const checked: Dashboard = {
  ...dashboard,
  templating: { list: variables },
};
