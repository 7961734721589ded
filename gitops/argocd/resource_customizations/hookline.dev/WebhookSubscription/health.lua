-- Argo CD health of a WebhookSubscription (hookline.dev/v1alpha1).
--
-- The controller writes Ready, Reconciling and Stalled (the kstatus
-- conventions); the dispatcher writes Accepted, EndpointHealthy and
-- Suspended. Checks run from the most to the least urgent: a spec that
-- cannot work, then held deliveries, then a failing endpoint. Uses only
-- the base and table libraries, the ones Argo CD opens.
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

-- The dispatcher may not have caught up with the latest spec yet: its
-- conditions count only for the generation they describe.
local function currentDispatcherCondition(conditionType)
  local c = condition(conditionType)
  if c ~= nil and generation ~= nil and c.observedGeneration ~= generation then
    return nil
  end
  return c
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

local suspended = currentDispatcherCondition("Suspended")
if suspended ~= nil and suspended.status == "True" then
  -- After a 410 Gone only a change to the spec resumes deliveries: that
  -- needs someone, unlike a suspension asked for in the spec.
  if suspended.reason == "EndpointGone" then
    hs.status = "Degraded"
  else
    hs.status = "Suspended"
  end
  hs.message = messageOf(suspended, "Deliveries are held; events stay queued")
  return hs
end

local endpoint = currentDispatcherCondition("EndpointHealthy")
if endpoint ~= nil and endpoint.status == "False" then
  hs.status = "Degraded"
  hs.message = "endpoint failing: " .. messageOf(endpoint, "deliveries fail")
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
