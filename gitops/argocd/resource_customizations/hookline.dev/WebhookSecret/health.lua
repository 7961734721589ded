-- Argo CD health of a WebhookSecret (hookline.dev/v1alpha1), from the
-- conditions the controller writes after the kstatus conventions: Ready
-- summarises, Reconciling while work is under way, Stalled when the spec
-- cannot work until someone changes it. Uses only the base and table
-- libraries, the ones Argo CD opens.
local hs = {}
local generation = obj.metadata.generation

local function condition(conditionType)
  if obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function messageOf(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

if obj.status == nil or obj.status.observedGeneration == nil
    or (generation ~= nil and obj.status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller"
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = messageOf(stalled, "The spec cannot work as it is")
  return hs
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = messageOf(ready, "Ready")
  return hs
end

local reconciling = condition("Reconciling")
hs.status = "Progressing"
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = messageOf(reconciling, "Reconciling")
else
  hs.message = messageOf(ready, "Waiting for the controller")
end
return hs
