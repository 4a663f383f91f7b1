#include "trainer/train/phase_plan.h"

#include <algorithm>
#include <utility>

#include "trainer/models/transfer_model.h"

namespace xfer::trainer::train {

std::vector<PhasePlan> plan_phases(const TrainOptions& o) {
  std::vector<PhasePlan> plan;
  int global = 0;
  for (const auto& [phase, schedule] :
       {std::pair{models::Phase::kFull, o.full}, std::pair{models::Phase::kHead, o.head},
        std::pair{models::Phase::kFinetune, o.finetune}}) {
    plan.push_back({phase, schedule, global});
    global += schedule.epochs;
  }
  return plan;
}

std::size_t phase_index(models::Phase phase) {
  switch (phase) {
    case models::Phase::kFull:
      return 0;
    case models::Phase::kHead:
      return 1;
    case models::Phase::kFinetune:
      return 2;
  }
  return 0;
}

const PhasePlan& plan_of(const std::vector<PhasePlan>& plan, models::Phase phase) {
  return plan.at(phase_index(phase));
}

bool later_phase_runs(const std::vector<PhasePlan>& plan, std::size_t index) {
  bool later = false;
  for (std::size_t p = index + 1; p < plan.size(); ++p) later |= plan[p].schedule.epochs > 0;
  return later;
}

double learning_rate(const PhaseSchedule& schedule, std::int64_t k) {
  return schedule.lr / (1.0 + schedule.decay * static_cast<double>(k));
}

StartPoint start_point(const std::vector<PhasePlan>& plan, const TrainingState* resumed) {
  StartPoint start;
  if (resumed == nullptr) return start;
  const std::size_t done_phase = phase_index(models::parse_phase(resumed->phase));
  if (resumed->epochs_done < plan[done_phase].schedule.epochs || resumed->mid_epoch()) {
    start.phase = done_phase;
    start.epoch = resumed->epochs_done + 1;
    start.resume_optimizer = true;
  } else {
    start.phase = done_phase + 1;
  }
  return start;
}

double learning_rate_at(const std::vector<PhasePlan>& plan, const TrainingState& state) {
  const PhasePlan& p = plan_of(plan, models::parse_phase(state.phase));
  return learning_rate(p.schedule, std::max<std::int64_t>(0, state.phase_step - 1));
}

}  // namespace xfer::trainer::train
