"""Learners: online RL and bandits against an env, offline learners from logs.

Every learner is scikit-learn style (parameters in the constructor, ``fit`` returns ``self``,
learned state ends in ``_``, ``random_state``) and yields a policy as ``policy_``: a
``TabularPolicy`` over state ids, or a contextual policy (``hfrl.contextual.LinearPolicy`` /
``NeuralPolicy``) over feature columns for users never seen.

Online, against an env (``fit(env, n_steps=)``, ``learning_curve_``):
``QLearning``, ``Sarsa``, ``ExpectedSarsa`` (tabular TD, ``n_envs`` parallel users) and the
bandits ``EpsilonGreedy``, ``UCB1``, ``ThompsonSampling`` (Beta-Bernoulli or Gaussian),
``LinUCB`` and ``LinearThompsonSampling`` (feature contexts: a state-feature table, or the feature
vectors of ``hfrl/ContextualRecommendation-v0``), which also decide one at a time
(``select``/``update``); on a contextual env, ``NeuralBandit`` (epsilon-greedy on a reward
network) and ``DQN`` (double DQN for the return of a session).

Offline, from logs (``fit(logs, n_states=, n_actions=)``): ``FittedQIteration`` (session logs),
``DirectMethodLearner``, ``IPSLearner`` and ``ConservativeLearner`` (support-restricted); on
feature columns (``context_columns=``): ``DirectMethodLearner`` (a ridge regression per action)
and ``NeuralPolicyLearner`` (a policy network trained on an IPS or DR objective).

The neural learners need PyTorch (``pip install 'hfrl[torch]'``), imported only by their ``fit``.
"""

from hfrl.learners.bandit_problems import BernoulliBandit
from hfrl.learners.conservative import ConservativeLearner
from hfrl.learners.direct_method import DirectMethodLearner
from hfrl.learners.dqn import DQN
from hfrl.learners.epsilon_greedy import EpsilonGreedy
from hfrl.learners.expected_sarsa import ExpectedSarsa
from hfrl.learners.fitted_q import FittedQIteration
from hfrl.learners.ips import IPSLearner
from hfrl.learners.linear_thompson import LinearThompsonSampling
from hfrl.learners.linucb import LinUCB
from hfrl.learners.neural_bandit import NeuralBandit
from hfrl.learners.neural_policy import NeuralPolicyLearner
from hfrl.learners.q_learning import QLearning
from hfrl.learners.sarsa import Sarsa
from hfrl.learners.thompson import ThompsonSampling
from hfrl.learners.ucb1 import UCB1

__all__ = [
    "DQN",
    "UCB1",
    "BernoulliBandit",
    "ConservativeLearner",
    "DirectMethodLearner",
    "EpsilonGreedy",
    "ExpectedSarsa",
    "FittedQIteration",
    "IPSLearner",
    "LinUCB",
    "LinearThompsonSampling",
    "NeuralBandit",
    "NeuralPolicyLearner",
    "QLearning",
    "Sarsa",
    "ThompsonSampling",
]
